"""The IR Graph: its name index and use map stay right under every kind of change, its table shows the
wiring, and lint() names the node at fault."""

import copy
import pickle

import pytest

from fpga4ml.ir import Graph, GraphError, Node


def relu(name, src, shape=(4,)):
    return Node(name, 'Activation', [src], shape, attrs={'function': 'relu'})


def diamond():
    """x -> a, b (both read x) -> m = a + b -> out."""
    g = Graph(inputs=['x'], outputs=['out'])
    g.add(Node('x', 'Input', [], (4,)))
    g.add(relu('a', 'x'))
    g.add(relu('b', 'x'))
    g.add(Node('m', 'Merge', ['a', 'b'], (4,), attrs={'mode': 'add'}))
    g.add(relu('out', 'm'))
    return g


def names(nodes):
    return [n.name for n in nodes]


def test_lookups_after_add_and_remove():
    g = diamond()
    assert g['m'].op == 'Merge' and 'm' in g and 'nope' not in g and 3 not in g
    g.remove('out')  # rewires the graph output to m
    assert 'out' not in g and g.outputs == ['m'] and g['m'].name == 'm'
    with pytest.raises(KeyError, match="no node named 'out'"):
        g['out']
    g.add(relu('out', 'm'))
    assert g['out'] is g.nodes[-1]
    with pytest.raises(GraphError, match="duplicate node name 'a'"):
        g.add(relu('a', 'x'))
    with pytest.raises(GraphError, match="node 'c': input 'zz' is not defined"):
        g.add(relu('c', 'zz'))


def test_remove_takes_the_named_node_not_an_equal_one():
    g = Graph(inputs=['x'])
    g.add(Node('x', 'Input', [], (4,)))
    g.add(relu('a', 'x'))
    g.add(relu('b', 'a'))
    g.add(relu('c', 'b'))
    g.remove('b')  # c now equals nothing else, but b's removal must not touch a or c
    assert names(g) == ['x', 'a', 'c'] and g['c'].inputs == ['a']


def test_lookups_after_direct_list_mutation():
    g = diamond()
    g.nodes.remove(g['out'])
    assert 'out' not in g
    g.nodes.append(relu('z', 'm'))  # same length as before the remove: the index must still see it
    assert 'z' in g and g['z'].inputs == ['m'] and names(g.users('m')) == ['z']
    g.nodes[1] = relu('a2', 'x')  # replaced in place
    assert 'a' not in g and g['a2'] is g.nodes[1]
    del g.nodes[1]
    assert 'a2' not in g and g['b'] is g.nodes[1]
    g.nodes = [n for n in g.nodes if n.name != 'z']  # a new list object
    assert 'z' not in g and g['m'].name == 'm' and g.users('m') == []
    g.nodes.insert(1, relu('a', 'x'))
    assert g['a'] is g.nodes[1] and g['b'] is g.nodes[2] and names(g.users('x')) == ['a', 'b']


def test_lookups_after_rename_and_rewiring():
    g = diamond()
    g['a'].name = 'left'  # renamed behind the graph's back
    assert 'a' not in g and g['left'].op == 'Activation'
    assert names(g.users('x')) == ['left', 'b']
    g['m'].inputs = ['left', 'b']
    assert names(g.users('left')) == ['m'] and g.users('a') == []
    g['b'].inputs = ['left']
    assert names(g.users('x')) == ['left'] and names(g.users('left')) == ['b', 'm']
    g.validate()


def test_renamed_node_blocks_its_new_name():
    g = diamond()
    g['a'].name = 'c'
    with pytest.raises(GraphError, match="duplicate node name 'c'"):
        g.add(relu('c', 'x'))


def test_in_place_edit_of_inputs_that_drops_a_user_is_seen():
    g = diamond()
    assert names(g.users('a')) == ['m']
    g['m'].inputs.remove('a')  # in place: no reassignment
    assert g.users('a') == []


def test_a_duplicated_name_finds_the_first_node():
    g = diamond()
    first = g['a']
    g.nodes.append(relu('a', 'b'))  # bypasses add(): validate() would refuse this graph
    assert g['a'] is first and names(g.users('b')) == ['m', 'a']
    with pytest.raises(GraphError, match="duplicate node name 'a'"):
        g.validate()


def test_users_on_a_diamond():
    g = diamond()
    assert names(g.users('x')) == ['a', 'b']
    assert names(g.users('a')) == ['m'] and names(g.users('b')) == ['m']
    assert names(g.users('m')) == ['out'] and g.users('out') == [] and g.users('nope') == []
    assert names(g.consumers('x')) == ['a', 'b']


def test_a_node_reading_one_input_twice_is_one_user():
    g = Graph(inputs=['x'])
    g.add(Node('x', 'Input', [], (4,)))
    g.add(Node('sq', 'Merge', ['x', 'x'], (4,), attrs={'mode': 'mul'}))
    assert names(g.users('x')) == ['sq']


def test_users_list_is_a_copy():
    g = diamond()
    g.users('x').clear()
    assert names(g.users('x')) == ['a', 'b']


def test_discard():
    g = diamond()
    g.add(relu('dead', 'x'))
    g.discard('dead')
    assert 'dead' not in g and names(g.users('x')) == ['a', 'b']
    with pytest.raises(GraphError, match=r"cannot discard node 'a': nodes \['m'\] read it"):
        g.discard('a')
    with pytest.raises(GraphError, match="cannot discard node 'out': it is a graph input or output"):
        g.discard('out')
    with pytest.raises(KeyError, match="no node named 'nope'"):
        g.discard('nope')


def test_copies_have_working_lookups():
    g = diamond()
    for other in (copy.deepcopy(g), pickle.loads(pickle.dumps(g)), copy.copy(g)):
        assert other == g
        assert other['m'].inputs == ['a', 'b'] and names(other.users('x')) == ['a', 'b']
    clone = copy.deepcopy(g)
    clone['a'].name = 'a_clone'
    assert 'a' in g and 'a' not in clone and 'a_clone' in clone


def test_table_shows_the_wiring():
    lines = str(diamond()).splitlines()
    header = lines[0].split()
    assert header[:4] == ['layer', 'op', 'inputs', 'input']  # 'input shapes' follows the names
    rows = {line.split()[0]: line for line in lines[2:-1]}
    assert rows['m'].split()[2:4] == ['a,', 'b']
    assert rows['m'].split()[4:6] == ['(4,),', '(4,)']
    assert rows['a'].split()[2] == 'x' and rows['x'].split()[2] == '-'
    assert lines[-1].startswith('5 layers')


def test_table_prints_a_dangling_input():
    g = diamond()
    g['out'].inputs = ['gone']
    assert '?' in [line for line in g.table().splitlines() if line.startswith('out')][0]


def test_lint_accepts_a_good_graph():
    diamond().lint()


@pytest.mark.parametrize('breakage, message', [
    (lambda g: setattr(g['b'], 'shape', (4, 0)), r"node 'b': shape \(4, 0\) is not a tuple of positive ints"),
    (lambda g: setattr(g['b'], 'shape', [4]), r"node 'b': shape \[4\] is not a tuple of positive ints"),
    (lambda g: setattr(g['b'], 'shape', (4.0,)), r"node 'b': shape \(4.0,\) is not a tuple of positive ints"),
    (lambda g: setattr(g['m'], 'op', 'Mystery'), "node 'm': unknown op 'Mystery'"),
    (lambda g: setattr(g['b'], 'inputs', []), r"node 'b': a Activation node reading \[\] is not reachable"),
    (lambda g: g.nodes.insert(1, Node('y', 'Input', [], (4,))), "node 'y': an Input node that is not listed"),
    (lambda g: setattr(g['x'], 'inputs', ['x']), "node 'x': input 'x' is not defined before it"),
    (lambda g: setattr(g, 'inputs', ['x', 'x']), r"graph inputs \['x', 'x'\] name a node more than once"),
    (lambda g: setattr(g['b'], 'name', 'a'), "duplicate node name 'a'"),
    (lambda g: setattr(g, 'outputs', ['nope']), "graph output 'nope' is not a node"),
])
def test_lint_names_the_fault(breakage, message):
    g = diamond()
    breakage(g)
    with pytest.raises(GraphError, match=message):
        g.lint()


def test_lint_runs_the_validate_checks_first():
    g = diamond()
    g.nodes.insert(1, Node('y', 'Input', [], (4,)))
    g.nodes.insert(2, relu('fromy', 'y'))
    g.inputs = ['x', 'y']
    g.lint()  # listed now: fine
    g['y'].op = 'Reshape'  # y is no longer an input: validate() names it first
    with pytest.raises(GraphError, match="graph input 'y' is not an Input node"):
        g.lint()


def test_big_chain_builds_and_looks_up():
    n = 20_000
    g = Graph(inputs=['x'], outputs=[f'n{n - 1}'])
    g.add(Node('x', 'Input', [], (4,)))
    for i in range(n):
        g.add(relu(f'n{i}', f'n{i - 1}' if i else 'x'))
    assert len(g) == n + 1
    assert all(g[f'n{i}'] is g.nodes[i + 1] for i in range(0, n, 7))
    assert names(g.users('n123')) == ['n124'] and g.users(f'n{n - 1}') == []
    g.remove('n500')
    assert g['n501'].inputs == ['n499'] and 'n500' not in g and g['n19999'] is g.nodes[-1]
    g.lint()
