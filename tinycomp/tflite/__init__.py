"""Everything that reads or edits a .tflite flatbuffer, and nothing that imports TensorFlow.

- `model`: read and validate a .tflite with tflite-micro's own reader (`model_editor`).
- `find_tensors`: the weight tensors of named layers and the LUT layout their values allow.
- `compress`: compression with `tflite_micro.compression` (LUT, HUFFMAN, PRUNE), checked before and verified after.
- `huffman`: Huffman encoding in the format of TFLM's HUFFMAN decoder (canonical, length-limited, multi-level tables).
- `prune_encoding`: encoding in the format of TFLM's PRUNE decoder (a bitmask and the kept values).
- `encoders`: the HUFFMAN and PRUNE encoders as tflite-micro compressor plugins, and what each decoder refuses.
- `lossless`: every weight tensor's smallest exact encoding (LUT, HUFFMAN, PRUNE or none), measured in the file.
- `strip`: remove what the TFLM interpreter never reads at run time.
- `breakdown`: where a file's bytes go.
- `private`: the one place that touches tflite-micro's private APIs.
"""
