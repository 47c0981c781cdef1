"""Copy cloudfront/stream-auth.js into template.yaml's StreamAuthFunction, byte for byte.

CloudFormation takes a CloudFront Function's code inline only, so the template holds a copy;
run this after editing the function (tests/functions/test_cloudfront.py fails until you do):

    python cloudfront/sync.py
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(
    r"(      FunctionCode: !Sub\n        - \|\n)(.*?)(\n        - KeyValueStoreId: )", re.S
)


def main() -> None:
    template = ROOT / "template.yaml"
    code = (ROOT / "cloudfront" / "stream-auth.js").read_text()
    lines = code.rstrip("\n").split("\n")
    indented = "\n".join(f"          {line}" if line else "" for line in lines)
    text, count = BLOCK.subn(lambda m: m[1] + indented + m[3], template.read_text())
    if count != 1:
        raise SystemExit("template.yaml: StreamAuthFunction's FunctionCode block not found")
    template.write_text(text)


if __name__ == "__main__":
    main()
