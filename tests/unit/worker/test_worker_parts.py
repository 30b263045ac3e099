"""Small worker parts: settings, address policy, batcher, ledger, guard, decisions, errors."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

import pytest
from fakes import FakeScorer
from pydantic import SecretStr

from model.errors import CorruptImage as ModelCorruptImage
from model.errors import ImageTooLarge as ModelImageTooLarge
from worker.failures import CorruptImage, FailureRateExceeded, ImageTooLarge, InvalidEvent, from_image_error
from worker.guard import FailureRateGuard
from worker.ledger import OffsetLedger, commit_offsets
from worker.settings import KafkaSettings, Settings, describe_settings
from worker.stages.address_policy import AddressPolicy, HostPolicy, forbidden_reason
from worker.stages.batch import MicroBatcher
from worker.stages.output import should_publish
from worker.stages.score import ScoringStage
from worker.stages.store import WriteOutcome, WriteStatus, _us


# ------------------------------------------------------------------ settings
def test_settings_read_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALOCC_KAFKA__BOOTSTRAP_SERVERS", "broker-1:9093")
    monkeypatch.setenv("ALOCC_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("ALOCC_TOPICS__INPUT", "uploads")
    monkeypatch.setenv("ALOCC_BATCH__MAX_SIZE", "64")
    monkeypatch.setenv("ALOCC_FETCH__ALLOW_PRIVATE_NETWORKS", "true")
    settings = Settings()
    assert settings.kafka.bootstrap_servers == "broker-1:9093"
    assert settings.topics.input == "uploads"
    assert settings.topics.exclusions == "images.exclusions"
    assert settings.topics.dead_letter == "images.uploaded.dlq"
    assert settings.kafka.group_id == "alocc-worker"
    assert settings.batch.max_size == 64
    assert settings.fetch.allow_private_networks is True
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.kafka)
    with pytest.raises(ValueError, match="frozen"):
        settings.batch.max_size = 1  # type: ignore[misc]


def test_kafka_settings_produce_the_librdkafka_dicts() -> None:
    kafka = KafkaSettings(
        bootstrap_servers="b:9092",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="worker",
        sasl_password=SecretStr("s3cret"),
        extra={"socket.keepalive.enable": "true"},
        transactional_id="tx-1",
    )
    consumer = kafka.consumer_config()
    assert consumer["sasl.password"] == "s3cret"  # revealed only here
    assert consumer["partition.assignment.strategy"] == "cooperative-sticky"
    assert consumer["enable.auto.commit"] is False
    assert consumer["socket.keepalive.enable"] == "true"
    producer = kafka.producer_config()
    assert producer["transactional.id"] == "tx-1" and producer["enable.idempotence"] is True
    at_least_once = KafkaSettings(transactional=False).producer_config()
    assert "transactional.id" not in at_least_once and at_least_once["enable.idempotence"] is True


def test_every_setting_is_described_with_its_default() -> None:
    rows = {env: default for env, default, _ in describe_settings()}
    assert rows["ALOCC_KAFKA__GROUP_ID"] == "alocc-worker"
    assert rows["ALOCC_TOPICS__INPUT"] == "images.uploaded"
    assert rows["ALOCC_FETCH__ALLOW_PRIVATE_NETWORKS"] == "False"
    assert rows["ALOCC_REDIS__URL"] == "(secret)"
    assert len(rows) > 50


# ------------------------------------------------------------------ address policy
@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
        "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "::ffff:10.0.0.1",
        "64:ff9b::a00:1", "2002:c0a8:101::1", "ff02::1", "198.18.0.1",
    ],
)  # fmt: skip
def test_non_public_addresses_are_forbidden(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None
    AddressPolicy(False).check_all("h", [ipaddress.ip_address(address)])


def test_host_allow_list_matching() -> None:
    policy = HostPolicy((".shop.example", "img.other.example"))
    for host in ("shop.example", "cdn.shop.example", "IMG.other.example."):
        policy.check(host)
    for host in ("evilshop.example", "other.example", "a.img.other.example"):
        with pytest.raises(Exception, match="allowed host list"):
            policy.check(host)


# ------------------------------------------------------------------ batcher
def test_batches_are_released_when_full_or_after_max_wait() -> None:
    now = [0.0]
    batcher: MicroBatcher[int] = MicroBatcher(3, 0.05, clock=lambda: now[0])
    assert not batcher.ready() and batcher.time_until_ready() is None
    batcher.add(1)
    batcher.add(2)
    assert not batcher.ready()
    assert batcher.time_until_ready() == pytest.approx(0.05)
    now[0] = 0.06
    assert batcher.ready()
    batcher.add(3)
    batcher.add(4)
    assert batcher.take() == [1, 2, 3]
    assert batcher.take() == [4]
    batcher.add(5)
    batcher.add(6)
    assert batcher.discard(lambda item: item == 5) == [5]
    assert len(batcher) == 1


# ------------------------------------------------------------------ ledger
@dataclass
class Item:
    offset: int
    finished: bool = False


def test_only_the_finished_prefix_is_committable() -> None:
    ledger: OffsetLedger[Item] = OffsetLedger()
    items = [Item(o) for o in (10, 11, 12)]
    for item in items:
        ledger.track(("t", 0), item)
    items[1].finished = True
    assert ledger.finished_prefix() == {}
    items[0].finished = True
    prefix = ledger.finished_prefix()
    assert commit_offsets(prefix) == {("t", 0): 12}
    ledger.release(prefix)
    assert len(ledger) == 1 and ledger.first_offsets() == {("t", 0): 12}
    with pytest.raises(ValueError, match="not after"):
        ledger.track(("t", 0), Item(5))
    assert ledger.drop({("t", 0)}) == {("t", 0): [items[2]]}
    assert len(ledger) == 0


# ------------------------------------------------------------------ guard
def test_guard_stops_only_when_most_of_the_window_fails() -> None:
    guard = FailureRateGuard(window=10, min_events=10, max_failure_ratio=0.5)
    for _ in range(9):
        guard.record(True, "FetchTimeout")  # below min_events: no verdict yet
    guard = FailureRateGuard(window=10, min_events=10, max_failure_ratio=0.5)
    for _ in range(10):
        guard.record(False)
    for _ in range(5):
        guard.record(True, "FetchTimeout")  # 5 of 10: not more than half
    with pytest.raises(FailureRateExceeded, match="FetchTimeout x6"):
        guard.record(True, "FetchTimeout")


def test_guard_check_records_nothing_until_extended() -> None:
    guard = FailureRateGuard(window=10, min_events=10, max_failure_ratio=0.5)
    guard.extend([(False, "")] * 10)
    step = [(True, "HttpError")] * 5
    guard.check(step)
    guard.check(step)  # an aborted step checked again: still 5 of 10, nothing was counted twice
    guard.extend(step)
    with pytest.raises(FailureRateExceeded, match="HttpError x6"):
        guard.check([(True, "HttpError")])


def test_a_disabled_guard_never_stops() -> None:
    guard = FailureRateGuard(window=5, min_events=1, max_failure_ratio=1.0)
    for _ in range(20):
        guard.record(True, "HttpError")


# ------------------------------------------------------------------ decisions and errors
@pytest.mark.parametrize(
    ("excluded", "status", "previous", "expected"),
    [
        (True, WriteStatus.APPLIED, None, True),
        (True, WriteStatus.APPLIED, True, True),
        (False, WriteStatus.APPLIED, None, False),
        (False, WriteStatus.APPLIED, False, False),
        (False, WriteStatus.APPLIED, True, True),  # no longer excluded: tell the indexer
        (False, WriteStatus.REPLAY, True, True),  # a redelivery decides the same way
        (True, WriteStatus.STALE, False, False),  # an older event never changes the decision
    ],
)
def test_which_decisions_are_published(
    excluded: bool, status: WriteStatus, previous: bool | None, expected: bool
) -> None:
    assert should_publish(excluded, WriteOutcome(status, previous)) is expected


def test_model_image_errors_map_to_same_named_dead_letter_reasons() -> None:
    assert isinstance(from_image_error(ModelCorruptImage("x")), CorruptImage)
    assert from_image_error(ModelImageTooLarge("x")).reason == "ImageTooLarge"
    assert isinstance(from_image_error(ModelImageTooLarge("x")), ImageTooLarge)
    assert InvalidEvent("x").reason == "InvalidEvent"


def test_upload_times_order_exactly_in_microseconds() -> None:
    base = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    assert _us(base + dt.timedelta(microseconds=1)) - _us(base) == 1
    tokyo = dt.timezone(dt.timedelta(hours=9))
    assert _us(base.astimezone(tokyo)) == _us(base)
    assert _us(base) < 2**53


def test_the_scoring_stage_warms_up_on_the_requested_batch_sizes() -> None:
    scorer = FakeScorer()
    ScoringStage(scorer, warm_up_batches=(1, 32))
    assert scorer.batches == [1, 32]
    ScoringStage(scorer)
    assert scorer.batches == [1, 32]  # no warm-up unless asked for
