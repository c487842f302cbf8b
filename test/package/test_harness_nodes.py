"""The start_node fixture hands the node what a test asks for: the tiny models with the test's
parameters on top, its own namespace (or the root one) and its inputs remapped there. Checked
with a stand-in program in place of the node, which prints the command line it was given, so
no model loads and no DDS is needed.
"""

import json
from pathlib import Path

import yaml

ECHO = [
    "-c",
    "import json, sys; print(json.dumps(sys.argv[1:]), flush=True)",
]


def _arguments(node) -> list[str]:
    node.proc.wait(timeout=60)
    node.stop()
    return json.loads(node.log.strip().splitlines()[-1])


def _params_file(args: list[str]) -> dict:
    files = [args[i + 1] for i, a in enumerate(args) if a == "--params-file"]
    assert files[0].endswith("config/segment.yaml"), files
    return yaml.safe_load(Path(files[-1]).read_text())


def test_a_node_gets_the_tiny_models_with_the_tests_parameters_in_its_namespace(
    start_node, tiny_model_dirs
):
    node = start_node("harness_ns", dict(queue_size=3, prefetch="latest"), program=ECHO)
    args = _arguments(node)
    params = _params_file(args)["/harness_ns/iterprime_segmenter"]["ros__parameters"]
    assert params["queue_size"] == 3 and params["prefetch"] == "latest"
    assert params["vlp_model"] == str(tiny_model_dirs.blip) and params["device"] == "cpu"
    assert "__ns:=/harness_ns" in args and "image:=/harness_ns/cam/image" in args
    assert node.out == "/harness_ns/iterprime_segmenter"


def test_a_node_in_the_root_namespace_listens_on_the_given_topics(start_node):
    node = start_node("", None, program=ECHO, topics={"image": "/camera/image", "command": "/c"})
    args = _arguments(node)
    assert not any(a.startswith("__ns:=") for a in args), args
    assert "image:=/camera/image" in args and "command:=/c" in args
    assert "/iterprime_segmenter" in _params_file(args)
    assert node.out == "/iterprime_segmenter"
