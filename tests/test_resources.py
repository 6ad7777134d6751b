from service_flow import Fatal, Resources, Service


class Connection:
    def __init__(self, journal, name):
        self.journal, self.name = journal, name
        self.open = False

    def setup(self):
        self.journal.append(f"setup {self.name}")
        self.open = True

    def teardown(self):
        self.journal.append(f"teardown {self.name}")
        self.open = False


class Uses(Service):
    def __init__(self, *resources):
        self.resources = resources

    def __call__(self):
        return None


class Hooked(Service):
    def __init__(self, journal):
        self.journal = journal

    def setup(self):
        self.journal.append("setup hooked")

    def __call__(self):
        return None


def test_resources_are_found_in_steps_branches_and_sub_flows_once_each():
    journal = []
    shared, other = Connection(journal, "shared"), Connection(journal, "other")
    flow = Uses(shared) >> Hooked(journal) < ("k", {1: Uses(shared, other), 2: Uses(other)})
    resources = Resources.of(flow)
    assert [r.name if isinstance(r, Connection) else "hooked" for r in resources.items] == ["shared", "hooked", "other"]


def test_restart_tears_down_in_reverse_then_sets_up_in_order():
    journal = []
    flow = Uses(Connection(journal, "a")) >> Hooked(journal) >> Uses(Connection(journal, "b"))
    Resources.of(flow).restart()
    assert journal == ["teardown b", "teardown a", "setup a", "setup hooked", "setup b"]


def test_a_failing_teardown_is_logged_and_the_others_still_run(events):
    journal = []

    class Broken:
        def teardown(self):
            raise OSError("already closed")

    good = Connection(journal, "good")
    resources = Resources.of(Uses(good, Broken()))
    errors = resources.teardown()
    assert [type(e) for e in errors] == [OSError]
    assert journal == ["teardown good"]
    failed = [e for e in events if e["event"] == "resource.teardown_failed"]
    assert failed[0]["resource"] == "Broken"
    assert "already closed" in failed[0]["error"]
    assert failed[0]["log_level"] == "warning"


def test_functions_and_plain_services_have_no_resources():
    flow = Uses() >> (lambda: None)
    assert not Resources.of(flow)
    assert len(Resources.of(flow)) == 0


def test_a_service_class_attribute_named_resources_that_is_not_iterable_is_ignored():
    class Odd(Service):
        resources = 3

        def __call__(self):
            raise Fatal

    assert not Resources.of(Odd() >> Odd())
