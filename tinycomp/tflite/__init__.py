"""Everything that reads or edits a .tflite flatbuffer, and nothing that imports TensorFlow.

- `model`: read and validate a .tflite with tflite-micro's own reader (`model_editor`).
- `find_tensors`: the weight tensors of named layers and the LUT layout their values allow.
- `compress`: compression with `tflite_micro.compression` (LUT, HUFFMAN, PRUNE), checked before and verified after.
- `encoded`: the stale quantization tflite-micro leaves on LUT-encoded tensors, and its removal; HUFFMAN and PRUNE
  decoded copies trimmed to what TFLM reads, and equal ancillary tensors shared.
- `decode_merge`: TFLM_DECODE operators folded into earlier ones where the measured TFLM arena gets smaller.
- `file_growth`: what LUT-compressing one tensor does to the bytes of the whole file.
- `huffman`: Huffman encoding in the format of TFLM's HUFFMAN decoder (canonical, length-limited, multi-level tables).
- `prune_encoding`: encoding in the format of TFLM's PRUNE decoder (a bitmask and the kept values).
- `encoders`: the HUFFMAN and PRUNE encoders as tflite-micro compressor plugins, and what each decoder refuses.
- `lossless`: every weight tensor's smallest exact encoding (LUT, HUFFMAN, PRUNE or none), measured in the file.
- `strip`: remove what the TFLM interpreter never reads at run time.
- `slicing`: slice weight tensors along their output channels, so decoding never needs a whole tensor.
- `breakdown`: where a file's bytes go.
- `kmeans`: exact 1-D k-means of integer values (the optimal levels of one value table).
- `levels`: palettizing one weight tensor (its levels per value table), shared by `palettize` and `calibrated`.
- `palettize`: post-training palettization of a file's weights (`palettize_model`).
- `calibrated`: data-aware palettization: levels and biases chosen from the layer inputs.
- `activations`: input statistics of the weight operators, measured in the TFLM interpreter.
- `cut`: the model that runs only the operators from one operator on (plan's cut candidates).
- `private`: the one place that touches tflite-micro's private APIs.
"""
