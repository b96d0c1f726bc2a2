"""Readers: RecBole atomic files, GRU4Rec session files, and the ml-100k file in the recbole
wheel."""
import numpy as np
import pytest

from mmext.datasets.recsys.readers import ml100k_path, read_atomic_inter, read_session_file


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_atomic_types_and_fields(tmp_path):
    path = write(
        tmp_path, 'x.inter',
        'user_id:token\titem_id:token\trating:float\ttags:token_seq\tvec:float_seq\n'
        'u1\ti1\t3\ta b\t1 2.5\n'
        '\n'
        'u2\ti07\t4.5\t\t\n')
    d = read_atomic_inter(path)
    assert d['user_id'].tolist() == ['u1', 'u2']
    assert d['item_id'].tolist() == ['i1', 'i07']  # tokens keep leading zeros
    assert d['rating'].dtype == np.float64 and d['rating'].tolist() == [3.0, 4.5]
    assert d['tags'][0] == ('a', 'b') and d['tags'][1] == ()
    np.testing.assert_array_equal(d['vec'][0], [1.0, 2.5])
    sub = read_atomic_inter(path, fields=['item_id', 'user_id'])
    assert list(sub) == ['item_id', 'user_id']
    with pytest.raises(KeyError, match='timestamp'):
        read_atomic_inter(path, fields=['timestamp'])


@pytest.mark.parametrize('body,problem', [
    ('u1\ti1\t3\n', '3 tab-separated values'),
    ('u1\ti1\tfoo\t5\n', "'foo' is not a number"),
    ('u1\t\t3\t5\n', "'item_id' is empty"),
    ('u1\ti1\t\t5\n', "'rating' is empty"),
    ('u1\ti1\tnan\t5\n', 'NaN'),
])
def test_atomic_malformed_line_names_file_and_line(tmp_path, body, problem):
    path = write(
        tmp_path, 'bad.inter', 'user_id:token\titem_id:token\trating:float\t'
        'timestamp:float\nu0\ti0\t1\t2\n' + body)
    with pytest.raises(ValueError, match=f'bad.inter:3: .*{problem}'):
        read_atomic_inter(path)


@pytest.mark.parametrize('header,problem', [
    ('user_id\titem_id:token\n', 'not of the form name:type'),
    ('user_id:token\titem_id:int\n', "unknown type 'int'"),
    ('user_id:token\tuser_id:token\n', 'twice'),
])
def test_atomic_bad_header(tmp_path, header, problem):
    path = write(tmp_path, 'h.inter', header + 'a\tb\n')
    with pytest.raises(ValueError, match=f'h.inter:1: .*{problem}'):
        read_atomic_inter(path)


def test_session_file_tab_and_comma(tmp_path):
    tab = write(tmp_path, 's.tsv', 'SessionId\tItemId\tTime\n1\t214\t100.5\n1\t215\t101\n')
    comma = write(tmp_path, 's.csv', 'Time,ItemId,SessionId\n100.5,214,1\n101,215,1\n')
    a, b = read_session_file(tab), read_session_file(comma)
    for d in (a, b):
        assert d['session_id'].tolist() == ['1', '1']
        assert d['item_id'].tolist() == ['214', '215']
        np.testing.assert_array_equal(d['timestamp'], [100.5, 101.0])


def test_session_file_raw_yoochoose_iso_times(tmp_path):
    path = write(
        tmp_path, 'yoochoose-clicks.dat',
        '1,2014-04-07T10:51:09.277Z,214536502,0\n1,2014-04-07T10:54:09.868Z,214536500,0\n')
    d = read_session_file(path, columns=['SessionId', 'Time', 'ItemId', 'Category'])
    assert d['item_id'].tolist() == ['214536502', '214536500']
    assert d['timestamp'][1] - d['timestamp'][0] == pytest.approx(180.591)


def test_session_file_errors(tmp_path):
    path = write(tmp_path, 's.tsv', 'SessionId\tItemId\tTime\n1\t2\t3\n1\t2\n')
    with pytest.raises(ValueError, match='s.tsv:3: 2 values'):
        read_session_file(path)
    path = write(tmp_path, 't.tsv', 'SessionId\tItemId\tTime\n1\t2\tyesterday\n')
    with pytest.raises(ValueError, match="t.tsv:2: .*'yesterday'"):
        read_session_file(path)
    with pytest.raises(ValueError, match="t.tsv:1: no column 'Session'"):
        read_session_file(path, session_key='Session')


def test_ml100k_from_recbole_wheel():
    path = ml100k_path()
    assert path.endswith('recbole/dataset_example/ml-100k/ml-100k.inter')
    d = read_atomic_inter(path, fields=['user_id', 'item_id', 'timestamp'])
    assert len(d['user_id']) == 100000
    assert len(np.unique(d['user_id'])) == 943 and len(np.unique(d['item_id'])) == 1682


def test_ml100k_missing_package_message(monkeypatch):
    import importlib.util
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None)
    with pytest.raises(FileNotFoundError, match='pip install --no-deps recbole==1.2.1'):
        ml100k_path()


def test_readers_report_progress_in_bytes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('MMEXT_PROGRESS_DELAY', '0')
    monkeypatch.delenv('MMEXT_PROGRESS', raising=False)
    monkeypatch.setattr('mmext.datasets.recsys.readers._PROGRESS_LINES', 100)
    rows = ''.join(f'u{i % 50}\ti{i % 70}\t{i}\n' for i in range(5000))
    path = write(tmp_path, 'big.inter', 'user_id:token\titem_id:token\ttimestamp:float\n' + rows)
    assert len(read_atomic_inter(path)['user_id']) == 5000
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if line.startswith('reading big.inter:')]
    assert lines[0].startswith('reading big.inter:   0% (0.0/0.1 MiB)')
    assert 3 <= len(lines) <= 11  # updated while reading, one line per 10 % at most
    assert lines[-1].startswith('reading big.inter: 100% (0.1/0.1 MiB), done in ')
    assert err[-1].startswith('columns of big.inter: 100% (3/3 columns), done in ')
    path = write(tmp_path, 'clicks.txt', 'SessionId\tItemId\tTime\n' + rows)
    assert len(read_session_file(path)['item_id']) == 5000
    err = capsys.readouterr().err.splitlines()
    lines = [line for line in err if line.startswith('reading clicks.txt:')]
    assert 3 <= len(lines) <= 11
    assert lines[-1].startswith('reading clicks.txt: 100% (0.1/0.1 MiB), done in ')
    assert err[-2:] == ['columns of clicks.txt...', err[-1]]
    assert err[-1].startswith('columns of clicks.txt: done in ')
