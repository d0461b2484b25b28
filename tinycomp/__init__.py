"""tinycomp: make Keras models small enough for microcontrollers, and prove they still work."""

__version__ = "0.1.0"
