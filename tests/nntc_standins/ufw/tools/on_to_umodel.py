"""Stand-in for `python3 -m ufw.tools.on_to_umodel` (ONNX -> fp32 umodel).

Grammar (NNTC "3.3.2 生成FP32 Umodel"): -m model, -s shapes, -i/-o tensor names ("[a,b]"), -d output dir
(default compilation), -D LMDB dir, --cmp, --dyn, --desc; nothing else (no -n: the net is named after the
file). Writes <d>/<stem>_bmneto_test_fp32.prototxt and <d>/<stem>_bmneto.fp32umodel (the vendor's names; the
umodel is a placeholder). The prototxt has the real layout: caffe text format, one multi-line `layer { }`
block per ONNX node, named after the NODE (`/estimator/final_layer/Conv`), its `top:` the node's output
tensors (`heatmaps`), so a tool given tensor names where it wants layer names fails here as it would there.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import _standin as s  # noqa: E402

SPEC = {"m": "str", "s": "str", "i": "str", "o": "str", "d": "str", "D": "str",
        "cmp": "switch", "dyn": "switch", "desc": "str"}
CAFFE_TYPES = {"Conv": "Convolution", "Relu": "ReLU", "Add": "Eltwise", "BatchNormalization": "BatchNorm",
               "Resize": "Upsample", "Upsample": "Upsample", "Concat": "Concat", "MaxPool": "Pooling",
               "AveragePool": "Pooling", "Gemm": "InnerProduct", "Sigmoid": "Sigmoid"}


def main(argv):
    # argparse-style: single-dash short options, double-dash long ones
    f, _ = s.parse_flags(argv, SPEC, dashes=("-", "--"), argparse_style=True)
    s.require(f, "m", "s", prefix="-")
    shapes = s.parse_shapes(f["s"])
    model = s.load_onnx(f["m"])
    if len(shapes) != 1 or s.input_shape(model, f["m"]) != shapes[0]:
        raise s.Fail("-s {} does not match {}'s input {}".format(f["s"], f["m"], s.input_shape(model, f["m"])))
    names = s.tensor_names(model)
    if "i" in f and s.parse_names(f["i"]) != [i.name for i in s.onnx_inputs(model)]:
        raise s.Fail("-i {}: the model's inputs are {}".format(f["i"], [i.name for i in s.onnx_inputs(model)]))
    for n in s.parse_names(f["o"]) if "o" in f else []:
        if n not in names:
            raise s.Fail("-o: {!r} is not a tensor of {}".format(n, f["m"]))
    source = ""
    if "D" in f:
        s.check_lmdb(f["D"], shapes[0])
        source = f["D"]
    out = f.get("d", "compilation")
    stem = os.path.splitext(os.path.basename(f["m"]))[0]
    prefix = os.path.join(out, stem + "_bmneto")
    os.makedirs(out, exist_ok=True)
    header = {"onnx": os.path.abspath(f["m"]), "net": stem, "input_shape": shapes[0], "lmdb": source,
              "stage": "fp32", "inputs": [i.name for i in s.onnx_inputs(model)],
              "outputs": [o.name for o in model.graph.output]}
    data = s.onnx_inputs(model)[0].name
    with open(prefix + "_test_fp32.prototxt", "w") as p:
        p.write("# standin: " + json.dumps(header) + "\n")
        p.write('name: "{}"\n'.format(header["net"]))
        p.write('layer {{\n  name: "{0}"\n  type: "Data"\n  top: "{0}"\n  data_param {{\n    source: "{1}"\n'
                '    batch_size: 1\n    backend: LMDB\n  }}\n}}\n'.format(data, source))
        for node in model.graph.node:
            if not node.name:
                raise s.Fail("{}: a {} node has no name".format(f["m"], node.op_type))
            lines = ['  name: "{}"'.format(node.name),
                     '  type: "{}"'.format(CAFFE_TYPES.get(node.op_type, node.op_type))]
            lines += ['  bottom: "{}"'.format(i) for i in node.input if i in names]
            lines += ['  top: "{}"'.format(o) for o in node.output if o]
            p.write("layer {\n" + "\n".join(lines) + "\n}\n")
    s.write_json(prefix + ".fp32umodel", {"standin": "umodel", "prec": "FP32", **header})
    print("stand-in on_to_umodel: wrote {}_test_fp32.prototxt, {}.fp32umodel".format(prefix, prefix))


if __name__ == "__main__":
    s.run("on_to_umodel", main)
