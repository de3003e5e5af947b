"""vitl: visual inspection by transfer learning."""
__version__ = "0.1.0"
