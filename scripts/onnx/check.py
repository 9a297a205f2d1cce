"""Checks a Stagewise ONNX export with the tools of the field (run with .venv-onnx/bin/python).

  check.py MODEL.onnx DATA.npz PREDICTIONS.npz [--outputs K] [--resave OUT.npz]

- onnx.checker.check_model with full_check (shape inference included) must pass;
- ONNX Runtime runs the model on DATA.npz's images (x or x_test, channels last; grey N×H×W gets
  its channel axis) and must give the class `stagewise predict` gave (PREDICTIONS.npz) on at
  least 99.9 % of them, with every logit within 1e-4 of Stagewise's, relative to its size
  (|a − b| ≤ 1e-4 · max(|b|, 1));
- --outputs K: the model must have K outputs (logits, and logits_stage_K with --all-heads);
- --resave: writes the images and labels again with numpy.savez_compressed, for Stagewise to read.
Exits 1, saying why, when a check fails.
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main(argv):
    model_path, data_path, predictions_path = argv[:3]
    options = dict(zip(argv[3::2], argv[4::2]))
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    data = np.load(data_path)
    key = "x" if "x" in data else "x_test"
    x = data[key].astype(np.float32)
    if x.ndim == 3:
        x = x[..., None]
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = session.run(None, {"images": x})
    logits = outputs[0]
    reference = np.load(predictions_path)["logits"]
    agree = float((logits.argmax(1) == reference.argmax(1)).mean())
    worst = float(np.max(np.abs(logits - reference) / np.maximum(np.abs(reference), 1)))
    labels = data.get("y", data.get("y_test"))
    accuracy = "" if labels is None else f", accuracy {100 * float((logits.argmax(1) == labels.reshape(-1)).mean()):.2f} %"
    print(f"onnx check: {model_path} passes onnx.checker (full, opset {model.opset_import[0].version}); "
          f"ONNX Runtime {ort.__version__} on {len(x)} images: outputs {', '.join(names)}; same class as Stagewise on "
          f"{100 * agree:.3f} %, largest logit difference {worst:.2e} (relative){accuracy}")
    failures = []
    if agree < 0.999:
        failures.append(f"classes agree on {100 * agree:.3f} % < 99.9 %")
    if not worst <= 1e-4:
        failures.append(f"a logit differs by {worst:.2e} > 1e-4 (relative)")
    if "--outputs" in options and len(names) != int(options["--outputs"]):
        failures.append(f"{len(names)} outputs, expected {options['--outputs']}")
    for name, values in zip(names[1:], outputs[1:]):
        if values.shape != logits.shape or not np.all(np.isfinite(values)):
            failures.append(f"output {name} has shape {values.shape} or non-finite values")
    if "--resave" in options:
        arrays = {"x": data[key]}
        if labels is not None:
            arrays["y"] = labels
        np.savez_compressed(options["--resave"], **arrays)
    if failures:
        print("onnx check failed: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
