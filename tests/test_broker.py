import json

from kafka import KafkaConsumer, KafkaProducer

from infra.broker import EmbeddedBroker


def test_embedded_broker_round_trips_keyed_messages():
    with EmbeddedBroker() as broker:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        for i in range(20):
            producer.send("roundtrip", key=f"u{i % 3}".encode(), value=json.dumps({"i": i}).encode())
        producer.flush()
        producer.close()

        consumer = KafkaConsumer(
            "roundtrip", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
            consumer_timeout_ms=5000,
        )
        got = sorted(json.loads(m.value)["i"] for m in consumer)
        consumer.close()
    assert got == list(range(20))


def test_stop_frees_the_port():
    broker = EmbeddedBroker().start()
    pid = broker.pid
    broker.stop()
    assert broker._proc.poll() is not None, f"tansu {pid} still running"


def test_cli_help_lists_every_subcommand(capsys):
    import pytest

    from stream.cli import COMMANDS, main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0
