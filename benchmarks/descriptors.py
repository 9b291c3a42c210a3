"""ml4ms descriptors against DScribe, in one process, on the same structures and settings.

Runs the SOAP benchmark (NOMAD 2018 averaged SOAP, TiO2 per-atom SOAP, TiO2 SOAP
gradients) and the ACSF benchmark (TiO2, 22 features), then prints the smallest
of the three speed ratios of the descriptors themselves:

    python benchmarks/descriptors.py            # full sizes of issue #4
    python benchmarks/descriptors.py --quick    # a small smoke run

The line ``speedup_vs_dscribe_min=<ratio>`` follows, and the last line is
``SUMMARY {json}`` (the three ratios, the gradient ratio and the minimum).
DScribe (a test/benchmark extra) must be installed: ``pip install -e .[bench]``.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import descriptors_acsf  # noqa: E402
import descriptors_soap  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 NOMAD / 200 TiO2 frames, 20 gradient frames")
    args = parser.parse_args(argv)
    soap_args = ["--nomad", "200", "--tio2", "200", "--grad", "20", "--grad-dscribe", "5"] if args.quick else []
    acsf_args = ["--frames", "200"] if args.quick else []
    print("== SOAP ==")
    soap = descriptors_soap.main(soap_args, summary=False)
    print("== ACSF ==")
    acsf = descriptors_acsf.main(acsf_args, summary=False)
    ratios = {k: v for k, v in soap.items() if "grad" not in k.lower()}
    ratios["TiO2 ACSF, 22 features"] = acsf
    print("== summary (DScribe time / ml4ms time) ==")
    for name, ratio in ratios.items():
        print(f"{name:40s} {ratio:6.2f}")
    print(f"speedup_vs_dscribe_min={min(ratios.values()):.2f}")
    summary = {"ratios": {k: round(v, 2) for k, v in ratios.items()},
               "speedup_vs_dscribe_min": round(min(ratios.values()), 2)}
    if "tio2_gradients" in soap:
        summary["gradient_ratio"] = round(soap["tio2_gradients"], 2)
    print("SUMMARY " + json.dumps(summary))
    return ratios


if __name__ == "__main__":
    main()
