"""A higher-precision copy of a GGUF model, for speculative-decoding benchmarks
(the issue's target/draft pair: the default model at F16 as target, its Q4_1
file as draft).  Uses the `gguf` PyPI package: every tensor dequantized, 2-D
weights written as F16 (or Q8_0 with --q8), the rest as F32; metadata copied.

usage: python make-f16-target.py IN.gguf OUT.gguf [--q8]"""
import sys

import numpy as np
import gguf

src, dst = sys.argv[1], sys.argv[2]
q8 = "--q8" in sys.argv[3:]
r = gguf.GGUFReader(src)
arch = r.fields["general.architecture"].contents()
w = gguf.GGUFWriter(dst, arch)
for name, field in r.fields.items():
    if name.startswith("GGUF.") or name == "general.architecture":
        continue
    vtype = field.types[0]
    sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
    w.add_key_value(name, field.contents(), vtype, sub_type=sub)
w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if q8 else gguf.LlamaFileType.MOSTLY_F16)
for t in r.tensors:
    data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
    if data.ndim == 2:
        if q8:
            w.add_tensor(t.name, gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(t.name, data.astype(np.float16))
    else:
        w.add_tensor(t.name, data)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(dst)
