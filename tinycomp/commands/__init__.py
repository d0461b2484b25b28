"""The file edge: one module per subcommand.

Each module declares its click command (`command`) and an edge function (`run`, keyword-only)
that reads the inputs, calls the library, writes outputs atomically and renders the result.
Heavy imports (TensorFlow, tflite-micro) stay inside function bodies so `--help` is fast.
`tinycomp.cli` registers the commands; `common` holds the helpers they share.

Commands: `train`, `cluster`, `convert`, `quantize`, `find_tensors` (find-tensors), `compress`, `strip`,
`palettize`, `plan` (a Keras model or an int8 .tflite), `evaluate` (eval), `gate`, `report`, `export`,
`bench_summary` (bench-summary), `makefile`.
"""

# click settings every command shares (here, not in common.py, so `tinycomp makefile` imports nothing heavy).
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
