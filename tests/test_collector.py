"""The collector skips what existed before a block, nested blocks give it back only at the outermost's end,
and a run of several in one process starts with what the runs before it left collected."""

import gc
import weakref

from experiments.run import run_of_several
from paradigms.collector import older_objects_frozen


class _Cycle:
    """An object only a full collection frees (it refers to itself), as a finished run's paradigm."""

    def __init__(self):
        self.itself = self


def test_only_the_outermost_block_gives_the_older_objects_back():
    assert gc.get_freeze_count() == 0
    with older_objects_frozen():
        outer = gc.get_freeze_count()
        assert outer > 0
        with older_objects_frozen():
            assert gc.get_freeze_count() >= outer
        assert gc.get_freeze_count() >= outer  # the inner block's end left the outer's objects frozen
    assert gc.get_freeze_count() == 0


def test_what_a_block_makes_and_drops_is_collected_and_older_garbage_waits():
    older = _Cycle()
    older_ref = weakref.ref(older)
    del older
    with older_objects_frozen():
        made = _Cycle()
        made_ref = weakref.ref(made)
        del made
        gc.collect()
        assert made_ref() is None
        assert older_ref() is not None  # frozen with everything older than the block
    gc.collect()
    assert older_ref() is None


def test_a_run_of_several_starts_with_the_runs_before_it_collected():
    previous = _Cycle()
    previous_ref = weakref.ref(previous)
    del previous
    with run_of_several():
        assert previous_ref() is None
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
