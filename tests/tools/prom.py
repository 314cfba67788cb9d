#!/usr/bin/env python3
"""Parses Prometheus text exposition from stdin with prometheus_client's own
parser (the reference, not ours) and prints one sample per line:
NAME<TAB>LABELS-AS-JSON<TAB>VALUE, after a line #<TAB>NAME<TAB>TYPE<TAB>HELP
for each family. Exit 3 when prometheus_client is missing."""
import json
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.exit(3)

for family in text_string_to_metric_families(sys.stdin.read()):
    print(f"#\t{family.name}\t{family.type}\t{family.documentation}")
    for sample in family.samples:
        labels = json.dumps(dict(sorted(sample.labels.items())), separators=(",", ":"))
        print(f"{sample.name}\t{labels}\t{sample.value}")
