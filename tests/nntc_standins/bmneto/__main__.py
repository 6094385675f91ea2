"""Stand-in for `python3 -m bmneto` (NNTC 2.7 ONNX front end): checks the call, writes <outdir>/compilation.bmodel.

Grammar (NNTC manual 3.2.6): --model --shapes --outdir --target required; --input_names --net_name --opt
--dyn --cmp --mode --descs --enable_profile --output_names optional; `--flag=value` or `--flag value`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _standin as s  # noqa: E402

SPEC = {"model": "str", "input_names": "str", "shapes": "str", "outdir": "str", "target": "str",
        "net_name": "str", "opt": "int", "dyn": "bool", "cmp": "bool", "mode": "str", "descs": "str",
        "enable_profile": "bool", "output_names": "str"}


def main(argv):
    f, _ = s.parse_flags(argv, SPEC, dashes=("--",))
    s.require(f, "model", "shapes", "outdir", "target")
    if f["target"] not in s.TARGETS:
        raise s.Fail("--target={}: expected one of {}".format(f["target"], ", ".join(s.TARGETS)))
    if f.get("opt", 1) not in (0, 1, 2):
        raise s.Fail("--opt={}: expected 0, 1 or 2".format(f["opt"]))
    if f.get("mode", "compile") not in ("compile", "GenUmodel"):
        raise s.Fail("--mode={}: expected compile or GenUmodel".format(f["mode"]))
    shapes = s.parse_shapes(f["shapes"])
    model = s.load_onnx(f["model"])
    if len(shapes) != 1:
        raise s.Fail("--shapes gives {} shapes for a 1-input model".format(len(shapes)))
    have = s.input_shape(model, f["model"])
    if have != shapes[0]:
        raise s.Fail("--shapes={} but {} takes {}".format(shapes[0], f["model"], have))
    names = s.tensor_names(model)
    for key in ("input_names", "output_names"):
        for n in s.parse_names(f[key]) if key in f else []:
            if n not in names:
                raise s.Fail("--{}: {!r} is not a tensor of {}".format(key, n, f["model"]))
    net = f.get("net_name") or os.path.splitext(os.path.basename(f["model"]))[0]
    s.write_json(os.path.join(f["outdir"], "compilation.bmodel"),
                 {"standin": "bmodel", "net": net, "prec": "FP32", "target": f["target"], "stages": shapes})
    print("stand-in bmneto: wrote {}".format(os.path.join(f["outdir"], "compilation.bmodel")))


if __name__ == "__main__":
    s.run("bmneto", main)
