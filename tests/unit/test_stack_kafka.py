"""A broker's storage follows the stack's shape: a one-broker stack keeps its data across
this change, and storage formatted for another number of brokers is made afresh (KRaft
refused it with INCONSISTENT_CLUSTER_ID when a one-broker stack was started with three)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ingest.stack.kafka import Kafka
from ingest.stack.layout import Layout


def _format(broker: Kafka, cluster_id: str) -> Path:
    data = broker.dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "meta.properties").write_text(f"node.id={broker.node}\ncluster.id={cluster_id}\n")
    (data / "falco.events-0").mkdir()  # a partition's folder
    return data


def test_a_one_broker_stack_from_before_keeps_its_data(tmp_path):
    broker = Kafka(Layout(tmp_path, 29092, 29200, 29000))
    data = _format(broker, "OldOneBrokerId")
    assert broker._storage_for_this_cluster() == "OldOneBrokerId"
    assert (data / "falco.events-0").exists()
    assert broker._storage_for_this_cluster() == "OldOneBrokerId"  # and again


def test_storage_of_another_shape_is_made_afresh_with_one_new_id_for_all(tmp_path):
    one = Layout(tmp_path, 29092, 29200, 29000)
    first = _format(Kafka(one), "OldOneBrokerId")
    Kafka(one)._storage_for_this_cluster()
    three = dataclasses.replace(one, kafka_brokers=3)
    brokers = [Kafka(three, n) for n in (1, 2, 3)]
    ids = {b._storage_for_this_cluster() for b in brokers}
    assert len(ids) == 1 and ids != {"OldOneBrokerId"}
    assert list(first.iterdir()) == []  # emptied, to be formatted with the new id
    # back to one broker: a new cluster again
    three_id = ids.pop()
    _format(Kafka(three, 1), three_id)
    again = Kafka(one)._storage_for_this_cluster()
    assert again not in ("OldOneBrokerId", three_id)
    assert not (first / "falco.events-0").exists()


def test_a_cluster_id_never_starts_like_an_option(monkeypatch):
    import uuid

    from ingest.stack import kafka

    # a first byte of 0xfb encodes to "-w..." in base64url: that id is skipped
    made = iter([uuid.UUID(bytes=b"\xfb" + bytes(15)), uuid.UUID(bytes=b"\x04" + bytes(15))])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(made))
    assert kafka._kraft_id() == "BAAAAAAAAAAAAAAAAAAAAA"
