"""Shared code of the NNTC stand-ins: flag parsing, input checks, placeholder outputs.

The stand-ins accept what the vendor documents for each tool, check that the inputs they are given exist
and make sense (ONNX loads and matches the shapes, the LMDB reads as ufw records of the right shape, the
FP32-tail names are ONNX tensors), and write placeholder outputs (JSON / caffe-like text, *not* real
umodels or bmodels) so a generated script can run end to end without the SDK.
"""
import ast
import json
import os
import sys


BOOLS = {"true": True, "false": False, "1": True, "0": False}
TARGETS = ("BM1682", "BM1684")     # NNTC 2.7 manual: "Option: BM1682, BM1684"
MAX_OPSET = 12                     # bmneto: onnx == 1.7.0 (opset 12)


class Fail(Exception):
    pass


def run(prog, main, argv=None):
    """Call main(argv); report a Fail as one line on stderr and exit 2."""
    try:
        main(sys.argv[1:] if argv is None else argv)
    except Fail as e:
        sys.stderr.write("{} (stand-in): error: {}\n".format(prog, e))
        sys.exit(2)


def parse_flags(argv, spec, dashes=("--",), positional=0, argparse_style=False):
    """Parse `--name=value` / `--name value` (and single-dash forms where `dashes` allows).

    spec: name -> kind, kind one of "str", "int", "bool", "switch" (no value). Returns (flags, positionals).
    argparse_style: one-letter names only with "-", longer names only with "--" (gflags takes either).
    """
    flags, pos = {}, []
    i = 0
    while i < len(argv):
        arg = argv[i]
        prefix = next((d for d in sorted(dashes, key=len, reverse=True) if arg.startswith(d) and len(arg) > len(d)),
                      None)
        if prefix is None and arg.startswith("-") and len(arg) > 1 and not arg[1].isdigit():
            raise Fail("unknown flag {}".format(arg.split("=", 1)[0]))
        if prefix is None or arg[len(prefix):len(prefix) + 1].isdigit():
            pos.append(arg)
            i += 1
            continue
        body = arg[len(prefix):]
        name, eq, value = body.partition("=")
        if name not in spec or (argparse_style and (prefix == "-") != (len(name) == 1)):
            raise Fail("unknown flag {}{}".format(prefix, name))
        if name in flags:
            raise Fail("flag {}{} given twice".format(prefix, name))
        kind = spec[name]
        if kind == "switch":
            if eq:
                raise Fail("flag {}{} takes no value".format(prefix, name))
            flags[name] = True
            i += 1
            continue
        if not eq:
            if i + 1 >= len(argv):
                raise Fail("flag {}{} needs a value".format(prefix, name))
            value = argv[i + 1]
            i += 1
        i += 1
        if kind == "int":
            try:
                value = int(value)
            except ValueError:
                raise Fail("flag {}{}={!r}: not an integer".format(prefix, name, value))
        elif kind == "bool":
            if value not in BOOLS and value.lower() not in BOOLS:
                raise Fail("flag {}{}={!r}: not a boolean".format(prefix, name, value))
            value = BOOLS[value.lower()]
        flags[name] = value
    if len(pos) != positional:
        raise Fail("unexpected argument(s) {}".format(pos) if pos else "missing positional argument")
    return flags, pos


def require(flags, *names, prefix="--"):
    for n in names:
        if n not in flags:
            raise Fail("missing required flag {}{}".format(prefix, n))


def parse_shapes(text):
    """'[1,3,128,96]', '[[1,3,128,96]]', '(1,3,128,96)' or '[(1, 3, 128, 96)]' -> [[1,3,128,96]]."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        raise Fail("cannot parse shapes {!r}".format(text))
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        value = [value]
    if not (isinstance(value, (list, tuple)) and value and
            all(isinstance(s, (list, tuple)) and s and all(isinstance(d, int) and d > 0 for d in s) for s in value)):
        raise Fail("shapes {!r}: expected [n,c,h,w] or [[n,c,h,w],...]".format(text))
    return [list(s) for s in value]


def parse_names(text):
    """'[a,b]' or 'a,b' -> ['a', 'b']."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise Fail("empty tensor name in {!r}".format(text))
    return names


def need_file(path, what):
    if not os.path.isfile(path):
        raise Fail("{} {} not found".format(what, path))


def load_onnx(path):
    import onnx
    need_file(path, "model")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:
        raise Fail("{}: not a loadable ONNX model ({})".format(path, str(e).splitlines()[0]))
    opset = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not opset or opset[0] > MAX_OPSET:
        raise Fail("{}: ONNX opset {} is above {} (NNTC 2.7 reads onnx 1.7.0)".format(path, opset, MAX_OPSET))
    return model


def onnx_inputs(model):
    init = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in init]


def input_shape(model, path):
    ins = onnx_inputs(model)
    if len(ins) != 1:
        raise Fail("{}: expected one input".format(path))
    return [d.dim_value if d.HasField("dim_value") else -1 for d in ins[0].type.tensor_type.shape.dim]


def tensor_names(model):
    names = {o for n in model.graph.node for o in n.output if o}
    names.update(i.name for i in model.graph.input)
    return names


def check_lmdb(path, record_shape):
    """Count the records; each must be float32 of `record_shape`."""
    from bmpose.calib.ufw import read_ufw_lmdb   # the reader under test elsewhere; ufwio checks it
    from bmpose.errors import BmposeError
    count = 0
    try:
        for arr in read_ufw_lmdb(path):
            if arr.dtype.name != "float32" or list(arr.shape) != list(record_shape):
                raise Fail("LMDB {} record {} is {} {}, the network input is float32 {}".format(
                    path, count, arr.dtype, list(arr.shape), list(record_shape)))
            count += 1
    except BmposeError as e:
        raise Fail("LMDB {}: {}".format(path, e))
    if not count:
        raise Fail("LMDB {} has no records".format(path))
    return count


def write_json(path, obj):
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def read_standin(path, kind):
    need_file(path, kind)
    try:
        with open(path) as f:
            obj = json.load(f)
    except ValueError:
        raise Fail("{}: not a {} (stand-in placeholder expected)".format(path, kind))
    if obj.get("standin") != kind:
        raise Fail("{}: not a {}".format(path, kind))
    return obj


def read_prototxt(path):
    """The stand-in prototxt's header (a JSON comment line) and the names of its top-level layer blocks."""
    need_file(path, "prototxt")
    header, layers, depth, in_layer = None, set(), 0, False
    with open(path) as f:
        for line in f:
            text = line.strip()
            if text.startswith("# standin: "):
                header = json.loads(text[len("# standin: "):])
                continue
            if depth == 0 and text.replace(" ", "").startswith("layer{"):
                in_layer = True
            elif in_layer and depth == 1 and text.startswith("name:"):
                layers.add(text.split('"', 2)[1])
            depth += text.count("{") - text.count("}")
            in_layer = in_layer and depth > 0
    if header is None:
        raise Fail("{}: not a stand-in prototxt".format(path))
    return header, layers
