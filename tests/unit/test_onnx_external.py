"""ONNX external-data references are confined to the model's folder before onnxruntime opens the file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import convert_model_to_external_data

from runtimes import load_runtime
from tests.protobuf_wire import varint as _varint
from tursi.core.errors import UnsafeModel
from tursi.formats.onnx_external import InvalidOnnx, check, check_folder, scan


def external(name: str, location: str, offset: int = 0, length: int = 16) -> TensorProto:
    t = numpy_helper.from_array(np.zeros(4, np.float32), name)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = t.external_data.add()
        entry.key, entry.value = k, v
    return t


def model_with(*, initializers: list[TensorProto] = (), nodes: list[onnx.NodeProto] = (), sparse=()) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    graph = helper.make_graph(
        list(nodes) or [helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y], list(initializers)
    )
    graph.sparse_initializer.extend(sparse)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "weights.bin").write_bytes(bytes(64))
    (tmp_path / "secret.bin").write_bytes(b"SECRET" * 8)
    return d


def test_references_inside_the_folder_are_listed(folder: Path) -> None:
    (folder / "model.onnx").write_bytes(model_with(initializers=[external("w", "weights.bin", 16, 16)]))
    refs = check(folder / "model.onnx")
    assert [(r.location, r.offset, r.length) for r in refs] == [("weights.bin", 16, 16)]


def test_agrees_with_onnx_on_a_model_saved_with_external_data(folder: Path) -> None:
    tensors = [numpy_helper.from_array(np.full((64,), i, np.float32), f"w{i}") for i in range(5)]
    nodes = [helper.make_node("Add", ["x" if i == 0 else f"a{i - 1}", f"w{i}"], [f"a{i}"]) for i in range(5)]
    nodes.append(helper.make_node("Identity", ["a4"], ["y"]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], tensors))
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location="data.bin", size_threshold=0)
    onnx.save_model(model, folder / "model.onnx")
    expected = {(e.value) for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    refs = check(folder / "model.onnx")
    assert len(refs) == 5
    assert {r.location for r in refs} == expected == {"data.bin"}
    assert sorted(r.offset for r in refs) == sorted(
        int(next(e.value for e in t.external_data if e.key == "offset")) for t in model.graph.initializer
    )


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("../secret.bin", "not a plain path"),
        ("sub/../../secret.bin", "not a plain path"),
        ("/etc/hostname", "not a plain path"),
        ("C:\\Windows\\win.ini", "not a plain path"),
        ("", "not a plain path"),
    ],
)
def test_paths_that_leave_the_folder_are_refused(folder: Path, location: str, message: str) -> None:
    (folder / "model.onnx").write_bytes(model_with(initializers=[external("w", location)]))
    with pytest.raises(UnsafeModel, match=message) as e:
        check(folder / "model.onnx")
    assert e.value.code == "unsafe_model"


def test_a_symlink_out_of_the_folder_is_refused(folder: Path) -> None:
    os.symlink(folder.parent / "secret.bin", folder / "innocent.bin")
    (folder / "model.onnx").write_bytes(model_with(initializers=[external("w", "innocent.bin")]))
    with pytest.raises(UnsafeModel, match="leads outside"):
        check(folder / "model.onnx")


def test_missing_files_and_ranges_past_the_end_are_invalid(folder: Path) -> None:
    for tensor, message in (
        (external("w", "nothing.bin"), "missing"),
        (external("w", "weights.bin", offset=60, length=16), "past its end"),
    ):
        (folder / "model.onnx").write_bytes(model_with(initializers=[tensor]))
        with pytest.raises(InvalidOnnx, match=message) as e:
            check(folder / "model.onnx")
        assert e.value.code == "invalid_onnx"


def test_references_hidden_in_subgraphs_attributes_and_sparse_tensors_are_found(folder: Path) -> None:
    bad = external("w", "../secret.bin")
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=bad)],
        "b",
        [],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [4])],
    )
    cond = helper.make_node("If", ["x"], ["y"], then_branch=branch, else_branch=branch)
    (folder / "model.onnx").write_bytes(model_with(nodes=[cond]))
    assert [r.location for r in scan(folder / "model.onnx")] == ["../secret.bin", "../secret.bin"]
    sparse = helper.make_sparse_tensor(external("v", "../secret.bin"), numpy_helper.from_array(np.array([0])), [4])
    (folder / "model.onnx").write_bytes(model_with(sparse=[sparse]))
    with pytest.raises(UnsafeModel):
        check(folder / "model.onnx")


def test_the_worker_refuses_before_onnxruntime_opens_it(folder: Path) -> None:
    (folder / "model.onnx").write_bytes(model_with(initializers=[external("w", "../secret.bin")]))
    manifest = {"plan": {"runtime": "onnxruntime", "task": "embeddings"}}
    with pytest.raises(UnsafeModel, match="not a plain path"):
        load_runtime(folder, manifest, threads=1)  # pooling.json is missing too: the check comes first
    check_folder(folder.parent / "empty-does-not-exist")  # no .onnx files: nothing to refuse


@pytest.mark.parametrize("data", [b"", b"\x08", b"\xff" * 11, b"\x3a\x10abc", b"\x0b\x00"])
def test_malformed_protobuf_is_invalid_onnx(folder: Path, data: bytes) -> None:
    (folder / "model.onnx").write_bytes(data)
    with pytest.raises(InvalidOnnx):
        scan(folder / "model.onnx")


def test_deep_nesting_is_refused_not_recursed(folder: Path) -> None:
    leaf = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "leaf", [], [])
    graph = leaf
    for _ in range(25):  # If inside If inside If ...: each level one more protobuf message deep
        node = helper.make_node("If", ["c"], ["y"], then_branch=graph, else_branch=leaf)
        graph = helper.make_graph([node], "g", [], [])
    (folder / "model.onnx").write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(InvalidOnnx, match="nest deeper"):
        scan(folder / "model.onnx")


SEED_MODEL = model_with(initializers=[external("w", "weights.bin", 0, 16), external("v", "weights.bin", 16, 16)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, len(SEED_MODEL) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_models_give_only_clear_errors(folder: Path, flips: list[tuple[int, int]]) -> None:
    data = bytearray(SEED_MODEL)
    for at, value in flips:
        data[at] = value
    (folder / "model.onnx").write_bytes(bytes(data))
    try:
        refs = check(folder / "model.onnx")
    except UnsafeModel:  # InvalidOnnx is one
        return
    for ref in refs:  # whatever is accepted stays inside the folder and inside its file
        target = (folder / ref.location).resolve()
        assert target.is_relative_to(folder.resolve())
        assert ref.offset + (ref.length or 0) <= target.stat().st_size


# --- the walker reads the protobuf exactly as onnxruntime's C++ protobuf does (issue 13, item 4) ---


def _overlong_tag(field: int) -> bytes:
    """A length-delimited field's tag in 5 bytes with bit 32 set: protobuf keeps the low 32 bits, so it is
    still ``field``; read as an unbounded varint it is field 2**29 + field, which no schema has."""
    tag = field << 3 | 2 | 1 << 32
    return bytes(tag >> 7 * i & 0x7F | (0x80 if i < 4 else 0) for i in range(5))


def model_hiding(tensor: TensorProto, where: str) -> bytes:
    """A model adding ``w`` to its input, whose graph (or the initializer ``w``) sits behind an over-long tag."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if where == "initializer":  # GraphProto.initializer(5)
        graph_bytes = model.graph.SerializeToString() + _field(_overlong_tag(5), tensor.SerializeToString())
        graph_tag = b"\x3a"
    else:  # ModelProto.graph(7)
        model.graph.initializer.append(tensor)
        graph_bytes, graph_tag = model.graph.SerializeToString(), _overlong_tag(7)
    model.ClearField("graph")
    return model.SerializeToString() + _field(graph_tag, graph_bytes)


def _field(tag: bytes, message: bytes) -> bytes:
    return tag + _varint(len(message)) + message


@pytest.mark.parametrize("where", ["graph", "initializer"])
def test_an_overlong_tag_does_not_hide_external_data_from_the_check(folder: Path, where: str) -> None:
    import onnxruntime as ort

    values = np.array([1.5, -2.0, 3.25, 8.0], np.float32)
    (folder / "weights.bin").write_bytes(values.tobytes() + bytes(48))
    model = folder / "model.onnx"
    model.write_bytes(model_hiding(external("w", "weights.bin", 0, 16), where))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])  # onnxruntime sees the tensor
    (out,) = session.run(None, {"x": np.zeros(4, np.float32)})
    assert out.tolist() == values.tolist()
    assert [(r.location, r.offset, r.length) for r in scan(model)] == [("weights.bin", 0, 16)]  # and so does the check
    for tensor, error, message in (
        (external("w", "../secret.bin"), UnsafeModel, "not a plain path"),
        (external("w", "weights.bin", offset=56, length=16), InvalidOnnx, "past its end"),
        (external("w", "*/_ORT_MEM_ADDR_/*", offset=4096), UnsafeModel, "in-memory marker"),
    ):
        model.write_bytes(model_hiding(tensor, where))
        with pytest.raises(error, match=message):
            check(model)


def test_onnxruntimes_in_memory_marker_is_refused(folder: Path) -> None:
    # before 1.24 onnxruntime read `length` bytes at address `offset` for this location, from any model file
    marker = folder / "*" / "_ORT_MEM_ADDR_" / "*"
    marker.parent.mkdir(parents=True)
    marker.write_bytes(bytes(64))  # a bundle can ship a file by that name: confinement alone would pass it
    (folder / "model.onnx").write_bytes(model_with(initializers=[external("w", "*/_ORT_MEM_ADDR_/*", 16, 16)]))
    with pytest.raises(UnsafeModel, match="in-memory marker") as e:
        check_folder(folder)
    assert (e.value.code, e.value.http_status) == ("unsafe_model", 422)


def test_a_location_resolves_against_the_models_own_directory(folder: Path) -> None:
    # onnxruntime opens sub/w.bin, next to the model, not w.bin at the top of the artifact
    (folder / "sub").mkdir()
    (folder / "w.bin").write_bytes(bytes(64))
    os.symlink(folder.parent / "secret.bin", folder / "sub" / "w.bin")
    (folder / "sub" / "model.onnx").write_bytes(model_with(initializers=[external("w", "w.bin")]))
    with pytest.raises(UnsafeModel, match="leads outside"):
        check_folder(folder)


@pytest.mark.parametrize(
    ("tensor_fields", "outcome"),
    [
        # data_location = 2**32 + 1: an int32 enum keeps the low 32 bits, EXTERNAL (with no location: refused)
        (b"\x70" + _varint(1 << 32 | 1), "external"),
        (b"\x70" + _varint(1 << 33), "not external"),  # low 32 bits are 0: DEFAULT
        (b"\xf2\x80\x80\x80\x80\x00\x00", "invalid"),  # a 6-byte tag: protobuf reads 5 at most and fails
        (b"\x42\x81\x80\x80\x80\x80\x00w", "invalid"),  # a 6-byte length: protobuf fails
        (b"\x42\x81\x80\x80\x80\x08" + b"w", "invalid"),  # a length of 2 GiB and more
        (b"\x70" + b"\xff" * 10 + b"\x01", "invalid"),  # an 11-byte varint
    ],
    ids=["enum-low-32-bits-external", "enum-low-32-bits-default", "6-byte-tag", "6-byte-length", "2GiB", "11-bytes"],
)
def test_decodes_varints_as_protobuf_does(folder: Path, tensor_fields: bytes, outcome: str) -> None:
    tensor = b"\x42\x01w" + tensor_fields  # TensorProto.name(8) = "w", then the field under test
    graph = b"\x2a" + _varint(len(tensor)) + tensor  # GraphProto.initializer(5)
    (folder / "model.onnx").write_bytes(b"\x3a" + _varint(len(graph)) + graph)  # ModelProto.graph(7)
    if outcome == "invalid":
        with pytest.raises(InvalidOnnx):
            scan(folder / "model.onnx")
        return
    refs = scan(folder / "model.onnx")
    assert [(r.location, r.offset, r.length) for r in refs] == ([("", 0, None)] if outcome == "external" else [])
