"""No code runs from an ONNX model file: node domains are checked before qonnx sees the model.

qonnx imports the Python module named by a custom node domain, so a model whose node has domain
'evil_ops' would run an evil_ops.py found on sys.path or in the working directory. Each test puts
such a module (which creates a marker file when imported) in tmp_path, makes tmp_path the working
directory and the head of sys.path, and checks the module is never imported. The controls show
that the same module *is* imported when qonnx itself is handed the domain (the harness can see
an import when one happens).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

onnx = pytest.importorskip('onnx')
pytest.importorskip('qonnx')

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import fpga4ml  # noqa: E402
from fpga4ml.cli import main  # noqa: E402
from fpga4ml.frontends.onnx import check_domains, onnx_to_graph  # noqa: E402
from fpga4ml.ir import GraphError  # noqa: E402


@pytest.fixture
def trap(tmp_path, monkeypatch):
    """A planted module factory: trap('name') writes name.py (or a package) that creates a marker when imported."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    planted = []

    def plant(module: str) -> 'Path':  # noqa: F821
        marker = tmp_path / f'{module}.imported'
        top = module.split('.')[0]
        body = f'open({str(marker)!r}, "w").write("imported")\n'
        if '.' in module:
            (tmp_path / top).mkdir()
            (tmp_path / top / '__init__.py').write_text(body)
        else:
            (tmp_path / f'{top}.py').write_text(body)
        planted.append(top)
        return marker

    yield plant
    for top in planted:
        for name in [m for m in sys.modules if m == top or m.startswith(top + '.')]:
            del sys.modules[name]


def dense_model(extra_nodes=(), out='y', opsets=(('', 17),), functions=(), domain=''):
    """x (8) -> Gemm -> h -> [extra nodes] -> out; `domain` is the Gemm node's domain."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node('Gemm', ['x', 'W', 'b'], ['h'], name='fc', transB=1, domain=domain), *extra_nodes]
    graph = helper.make_graph(
        nodes, 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', 8])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ['N', 4])],
        initializer=[numpy_helper.from_array(rng.normal(size=(4, 8)).astype(np.float32), 'W'),
                     numpy_helper.from_array(np.zeros(4, np.float32), 'b')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                              functions=list(functions))
    model.ir_version = 9
    return model


def evil_relu(domain='evil_ops'):
    """A Relu node claiming a custom domain."""
    return helper.make_node('Relu', ['h'], ['y'], name='sneaky', domain=domain)


def assert_not_imported(marker, module='evil_ops'):
    assert not marker.exists(), f'{module} was imported'
    assert module not in sys.modules


def test_evil_domain_is_refused_before_qonnx_imports_it(trap, tmp_path):
    marker = trap('evil_ops')
    path = tmp_path / 'model.onnx'
    onnx.save(dense_model([evil_relu()], opsets=(('', 17), ('evil_ops', 1))), path)
    with pytest.raises(GraphError, match=r"ONNX node 'sneaky' \(Relu\) has domain 'evil_ops'.*accepted: standard ONNX"):
        fpga4ml.convert_from_onnx_model(str(path))
    with pytest.raises(GraphError, match="'sneaky'"):
        fpga4ml.config_from_onnx_model(str(path))
    assert_not_imported(marker)


def test_control_qonnx_imports_the_domain_module(trap):
    """Control: qonnx's registry, handed the same domain, imports the planted module (the hole is real)."""
    from qonnx.custom_op.registry import is_custom_op

    marker = trap('evil_ops')
    is_custom_op('evil_ops')
    assert marker.exists() and 'evil_ops' in sys.modules


def test_cli_names_the_node_in_one_line(trap, tmp_path, capsys):
    marker = trap('evil_ops')
    onnx.save(dense_model([evil_relu()]), tmp_path / 'model.onnx')
    assert main(['summary', str(tmp_path / 'model.onnx')]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('fpga4ml: error: ') and "'sneaky' (Relu)" in err[0]
    assert_not_imported(marker)


def _if_with_evil_branch():
    """An If node (default domain) whose then-branch holds an evil-domain node."""
    then = helper.make_graph([evil_relu()], 'then', [], [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node('Relu', ['h'], ['y'], name='plain')], 'else', [],
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)])
    cond = helper.make_node('Constant', [], ['c'], name='cond', value=numpy_helper.from_array(np.array(True)))
    return [cond, helper.make_node('If', ['c'], ['y'], name='branch', then_branch=then, else_branch=other)]


def _function_with_evil_node():
    """A model-local function whose body holds an evil-domain node (and which the graph calls)."""
    func = helper.make_function('mylib', 'Act', ['h'], ['y'], [evil_relu()],
                                [helper.make_opsetid('', 17), helper.make_opsetid('evil_ops', 1)])
    call = helper.make_node('Act', ['h'], ['y'], name='call', domain='mylib')
    return func, call


@pytest.mark.parametrize('where', ['subgraph', 'function', 'function_call', 'opset', 'qonnx_non_quantizer',
                                   'ai_onnx_ml'])
def test_every_place_a_domain_can_hide_is_checked(trap, where):
    marker = trap('evil_ops')
    if where == 'subgraph':
        model, fragment = dense_model(_if_with_evil_branch()), "subgraph 'then_branch' of ONNX node 'branch'"
    elif where in ('function', 'function_call'):
        func, call = _function_with_evil_node()
        model = dense_model([call] if where == 'function_call' else [helper.make_node('Relu', ['h'], ['y'])],
                            opsets=(('', 17), ('mylib', 1)) if where == 'function_call' else (('', 17),),
                            functions=[func])
        fragment = "'call' (Act) has domain 'mylib'" if where == 'function_call' else 'function mylib.Act'
    elif where == 'opset':
        model = dense_model([helper.make_node('Relu', ['h'], ['y'])], opsets=(('', 17), ('evil_ops', 1)))
        fragment = "opset of domain 'evil_ops'"
    elif where == 'qonnx_non_quantizer':  # qonnx.custom_op.general holds much more than the quantizers
        model = dense_model([helper.make_node('MultiThreshold', ['h', 'W'], ['y'], name='mt',
                                              domain='qonnx.custom_op.general')])
        fragment = "'mt' (MultiThreshold) has domain 'qonnx.custom_op.general'"
    else:  # qonnx would import a top-level package 'ai'
        model = dense_model([helper.make_node('Normalizer', ['h'], ['y'], name='norm', domain='ai.onnx.ml')])
        fragment = "'norm' (Normalizer) has domain 'ai.onnx.ml'"
    with pytest.raises(GraphError) as err:
        onnx_to_graph(model)
    assert fragment in str(err.value)
    assert_not_imported(marker)


def test_standard_long_domain_does_not_import_a_planted_ai_package(trap):
    """'ai.onnx' is the default domain: it converts, and no top-level 'ai' package is imported for it."""
    marker = trap('ai.onnx')
    model = dense_model([helper.make_node('Relu', ['h'], ['y'], name='act', domain='ai.onnx')],
                        opsets=(('ai.onnx', 17),), domain='ai.onnx')
    check_domains(model)
    graph = onnx_to_graph(model)
    assert [n.op for n in graph] == ['Input', 'Dense', 'Activation']
    assert_not_imported(marker, 'ai')


def test_finn_quantizer_converts_without_importing_a_planted_finn_package(trap):
    marker = trap('finn.custom_op')
    params = {'q_s': np.float32(0.25), 'q_z': np.float32(0), 'q_b': np.float32(6)}
    quant = helper.make_node('Quant', ['h', 'q_s', 'q_z', 'q_b'], ['y'], name='q', domain='finn.custom_op.general',
                             signed=1, narrow=0, rounding_mode='ROUND')
    model = dense_model([quant], opsets=(('', 17), ('finn.custom_op.general', 1)))
    model.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in params.items())
    graph = onnx_to_graph(model)
    assert any(n.source == 'Quant' for n in graph)
    assert_not_imported(marker, 'finn')


def _annotated_model(marker):
    """A model whose tensor_layout annotation is Python code that qonnx's get_tensor_layout would eval()."""
    model = dense_model([helper.make_node('Relu', ['h'], ['y'], name='act')])
    annotation = onnx.TensorAnnotation(tensor_name='h')
    annotation.quant_parameter_tensor_names.add(key='tensor_layout',
                                                value=f"__import__('pathlib').Path({str(marker)!r}).touch()")
    model.graph.quantization_annotation.append(annotation)
    return model


def test_evaluated_annotations_never_run(tmp_path):
    marker = tmp_path / 'annotation.ran'
    graph = onnx_to_graph(_annotated_model(marker))
    assert len(graph) == 3 and not marker.exists()


def test_control_qonnx_evaluates_the_annotation(tmp_path):
    """Control: qonnx's ModelWrapper.get_tensor_layout runs the annotation (why we remove it)."""
    from qonnx.core.modelwrapper import ModelWrapper

    marker = tmp_path / 'annotation.ran'
    ModelWrapper(_annotated_model(marker)).get_tensor_layout('h')
    assert marker.exists()
