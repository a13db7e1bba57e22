"""Breaking things on purpose: TLS, credentials, a broker restarted mid-stream, unacknowledged
messages delivered again, garbage between good payloads."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from collector.model import BAD, GOOD
from tests.kit.mqtt import Publisher, make_certs
from tests.kit.ports import free_port
from tests.kit.programs import need_program
from tests.kit.sinks import Sink
from tests.kit.waiting import wait_for

from .conftest import config_with, source


async def test_garbage_interleaved_with_good_payloads(run_adapter, publisher, prefix):
    topic = f"{prefix}/meter"
    cfg = config_with([source([{"name": "power", "topic": topic, "json": "p.w"}])])
    run = await run_adapter(cfg)
    garbage = [b'{"p": {"w": 1', b"\x00\x01\x02", b'{"p": {"w": "n/a"}}', b'{"p": 5}', b"null"]
    items, good = [], []
    for i in range(600):
        if i % 3 == 2:
            items.append((topic, garbage[i % len(garbage)]))
        else:
            items.append((topic, f'{{"p": {{"w": {i}}}, "pad": "x"}}'))
            good.append(i)
    publisher.publish_many(items)
    await wait_for(lambda: len(run.sink.readings) == 600)
    assert [r.value for r in run.sink.readings if r.quality == GOOD] == good
    assert sum(1 for r in run.sink.readings if r.quality == BAD and r.value is None) == 200
    assert run.health.extra["bad_payloads"] == {"power": 200}
    assert run.task is not None and not run.task.done()


def stamped(topic: str, numbers: range) -> list[tuple[str, str]]:
    return [(topic, f'{{"n": {i}, "ts": {1_700_000_000_000 + i}}}') for i in numbers]


async def test_broker_restart_mid_stream(run_adapter, broker, prefix):
    mosq = broker(persistence=True)
    topic = f"{prefix}/v"
    cfg = config_with([source([{"name": "v", "topic": topic, "json": "n", "timestamp": "ts"},
                               {"name": "w", "topic": f"{prefix}/+/w"}], broker=mosq.url)])
    run = await run_adapter(cfg)
    pub = Publisher(mosq.port)
    pub.publish_many(stamped(topic, range(100)))
    pub.close()
    await wait_for(lambda: len(run.sink.of("v")) == 100)
    mosq.stop()
    await wait_for(lambda: not run.health.connected)
    await wait_for(lambda: any(r.quality == BAD for r in run.sink.readings))
    assert "connection" in (run.health.last_error or "")
    mosq.start()
    await wait_for(lambda: run.health.connected, within=20)
    pub = Publisher(mosq.port)
    pub.publish_many(stamped(topic, range(100, 200)))
    pub.close()

    def stored() -> set[tuple[int, object]]:  # the ledger's key is (series, ts): a copy adds nothing
        return {(r.ts, r.value) for r in run.sink.of("v") if r.quality == GOOD}

    await wait_for(lambda: len(stored()) == 200)
    assert stored() == {(1_700_000_000_000_000 + i * 1000, i) for i in range(200)}
    bad = [r for r in run.sink.readings if r.quality == BAD]
    # one BAD reading per configured tag for the outage, not one per retry
    assert sorted(r.tag for r in bad) == ["v", "w"]


async def test_unacknowledged_messages_come_again(run_adapter, broker, prefix):
    """QoS 1 + persistent session: what was not durable is not acknowledged, so the broker
    delivers it again to the next connection with the same client id."""
    mosq = broker(persistence=True)
    topic = f"{prefix}/n"
    cfg = config_with([source([{"name": "n", "topic": topic, "json": "n", "timestamp": "ts"}],
                              broker=mosq.url, client_id="persistent-1", qos=1)])
    stuck = Sink()
    stuck.durable.clear()  # the ledger never confirms
    first = await run_adapter(cfg, stuck)
    first.adapter.drain_seconds = 0.2
    pub = Publisher(mosq.port)
    pub.publish_many([(topic, f'{{"n": {i}, "ts": {1_700_000_000_000 + i}}}') for i in range(50)])
    # the broker sends at most its in-flight window (Mosquitto: 20) of unacknowledged messages
    await wait_for(lambda: first.health.reads >= 20)
    await asyncio.sleep(0.3)
    assert first.health.reads == 20 and first.health.extra["inflight"] == 20
    await first.stop()
    assert stuck.readings == []
    # published while no collector is connected: the broker queues them for the session
    pub.publish_many([(topic, f'{{"n": {i}, "ts": {1_700_000_000_000 + i}}}') for i in range(50, 80)])
    pub.close()
    second = await run_adapter(cfg)
    await wait_for(lambda: len({r.value for r in second.sink.readings}) == 80)
    assert sorted({r.value for r in second.sink.readings}) == list(range(80))
    await wait_for(lambda: second.health.extra.get("acked", 0) >= 80)
    await second.stop()
    third = await run_adapter(cfg)  # everything acknowledged: nothing comes again
    pub = Publisher(mosq.port)
    pub.publish(topic, '{"n": 999, "ts": 1700000001000}')
    pub.close()
    await wait_for(lambda: len(third.sink.readings) >= 1)
    assert [r.value for r in third.sink.readings] == [999]


@pytest.fixture
def password_broker(broker, tmp_path):
    """A broker that only lets in user `collector` with password `s3cret`."""
    passwords = tmp_path / "passwd"
    subprocess.run([need_program("mosquitto_passwd", "mosquitto"), "-b", "-c", str(passwords),
                    "collector", "s3cret"], check=True, capture_output=True)
    mosq = broker(extra=[f"password_file {passwords}"])
    mosq.conf.write_text(mosq.conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    mosq.stop()
    return mosq.start()


@pytest.mark.parametrize("version", ["3.1.1", "5"])
async def test_wrong_credentials_clear_error(run_adapter, password_broker, prefix, version):
    mosq = password_broker
    tags = [{"name": "v", "topic": f"{prefix}/v"}]
    bad = config_with([source(tags, broker=mosq.url, username="collector", password="wrong",
                              version=version)])
    run = await run_adapter(bad, connected=False)
    await wait_for(lambda: run.health.last_error is not None)
    assert "username or password" in run.health.last_error  # Mosquitto answers "not authorised"
    assert mosq.url in run.health.last_error and not run.health.connected
    good = config_with([source(tags, broker=mosq.url, username="collector", password="s3cret",
                               version=version)])
    ok = await run_adapter(good)
    assert ok.health.connected


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def tls_broker(broker, certs, require_client_cert=False):
    plain = free_port()
    extra = [f"cafile {certs['ca.crt']}", f"certfile {certs['server.crt']}",
             f"keyfile {certs['server.key']}",
             f"require_certificate {'true' if require_client_cert else 'false'}",
             f"listener {plain} 127.0.0.1"]
    mosq = broker(extra=extra)
    return mosq, plain


async def test_tls_with_ca_file(run_adapter, broker, certs, prefix):
    mosq, plain = tls_broker(broker, certs)
    topic = f"{prefix}/secure"
    cfg = config_with([source([{"name": "v", "topic": topic}],
                              broker=f"mqtts://127.0.0.1:{mosq.port}", ca_file=str(certs["ca.crt"]))])
    run = await run_adapter(cfg)
    pub = Publisher(plain)
    pub.publish(topic, "7.25")
    pub.close()
    await wait_for(lambda: len(run.sink.readings) == 1)
    assert run.sink.readings[0].value == 7.25


async def test_tls_client_certificate(run_adapter, broker, certs, prefix):
    mosq, plain = tls_broker(broker, certs, require_client_cert=True)
    topic = f"{prefix}/secure"
    url = f"mqtts://127.0.0.1:{mosq.port}"
    without = config_with([source([{"name": "v", "topic": topic}], broker=url, timeout="2s",
                                  ca_file=str(certs["ca.crt"]))])
    run = await run_adapter(without, connected=False)
    await wait_for(lambda: run.health.last_error is not None)
    assert "requires a client certificate" in run.health.last_error
    with_cert = config_with([source([{"name": "v", "topic": topic}], broker=url,
                                    ca_file=str(certs["ca.crt"]), cert_file=str(certs["client.crt"]),
                                    key_file=str(certs["client.key"]))])
    run = await run_adapter(with_cert)
    pub = Publisher(plain)
    pub.publish(topic, "1")
    pub.close()
    await wait_for(lambda: len(run.sink.readings) == 1)


async def test_tls_untrusted_broker_clear_error(run_adapter, broker, certs, tmp_path, prefix):
    mosq, _ = tls_broker(broker, certs)
    url = f"mqtts://127.0.0.1:{mosq.port}"
    cfg = config_with([source([{"name": "v", "topic": f"{prefix}/v"}], broker=url)])
    run = await run_adapter(cfg, connected=False)
    await wait_for(lambda: run.health.last_error is not None)
    assert "not trusted" in run.health.last_error and "ca_file" in run.health.last_error
    missing = config_with([source([{"name": "v", "topic": f"{prefix}/v"}], broker=url,
                                  ca_file=str(tmp_path / "nope.crt"))])
    run = await run_adapter(missing, connected=False)
    await wait_for(lambda: run.health.last_error is not None)
    assert "ca_file" in run.health.last_error and "not found" in run.health.last_error
    insecure = config_with([source([{"name": "v", "topic": f"{prefix}/v"}], broker=url,
                                   tls_insecure=True)])
    ok = await run_adapter(insecure)
    assert ok.health.connected


async def test_broker_unreachable(run_adapter, prefix):
    cfg = config_with([source([{"name": "v", "topic": f"{prefix}/v"}],
                              broker=f"mqtt://127.0.0.1:{free_port()}")])
    run = await run_adapter(cfg, connected=False)
    await wait_for(lambda: run.health.errors >= 2)
    assert "connection refused" in run.health.last_error
    assert [(r.tag, r.quality) for r in run.sink.readings] == [("v", BAD)]


async def test_refused_subscription_is_reported_and_the_rest_flows(run_adapter, prefix):
    """A broker whose ACL refuses one topic (amqtt's taboo-topic plugin answers SUBACK 0x80;
    Mosquitto instead grants and filters silently): health names the refused filter and
    what to check, its tag gets one BAD reading (a visible gap), the other tags flow."""
    from amqtt.broker import Broker

    port = free_port()
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
                    "amqtt.plugins.topic_checking.TopicTabooPlugin": {}},
    })
    await broker.start()
    try:
        ok_topic = f"{prefix}/ok"
        cfg = config_with([source([{"name": "secret", "topic": "prohibited"},
                                   {"name": "fine", "topic": ok_topic}],
                                  broker=f"mqtt://127.0.0.1:{port}")])
        run = await run_adapter(cfg)
        await wait_for(lambda: run.health.last_error is not None)
        assert "refused the subscription to prohibited" in run.health.last_error
        assert "ACL" in run.health.last_error and f"127.0.0.1:{port}" in run.health.last_error
        await wait_for(lambda: run.sink.of("secret"))
        assert [(r.value, r.quality) for r in run.sink.of("secret")] == [(None, BAD)]
        publisher = await asyncio.to_thread(Publisher, port)
        try:
            await asyncio.to_thread(publisher.publish, ok_topic, "41.5")
            await wait_for(lambda: run.sink.of("fine"))
        finally:
            await asyncio.to_thread(publisher.close)
        assert [(r.value, r.quality) for r in run.sink.of("fine")] == [(41.5, GOOD)]
        assert run.health.connected and run.task is not None and not run.task.done()
    finally:
        await broker.shutdown()
