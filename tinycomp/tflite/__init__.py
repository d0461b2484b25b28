"""Everything that reads or edits a .tflite flatbuffer, and nothing that imports TensorFlow.

- `model`: read and validate a .tflite with tflite-micro's own reader (`model_editor`).
- `find_tensors`: the weight tensors of named layers and the LUT layout their values allow.
- `compress`: LUT compression with `tflite_micro.compression`, checked before and verified after.
- `strip`: remove what the TFLM interpreter never reads at run time.
- `breakdown`: where a file's bytes go.
- `private`: the one place that touches tflite-micro's private APIs.
"""
