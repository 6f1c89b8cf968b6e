"""Idempotency-Key reservations: the same key and body return the original receipt, a different
body is refused (422), and a key whose first request is still in flight answers 409.

The in-flight state must be visible to a concurrent request before the first one commits, so
it is a row committed in its own short transaction before the body is read (the submission itself
is stored later, in the request's unit of work, which deletes the reservation in the same
transaction). A reservation names its owner: the request, and the process by host name, pid and
the process's start time (``/proc/<pid>/stat``), so that a reservation left behind by a killed
process on the same host is taken over at once, even if the pid has been reused. The owner also
renews a lease while the upload runs; on another host, or without ``/proc``, a reservation stops
blocking when its lease lapses (``LEASE``).

The key itself is never stored: only an HMAC of (client, key) under a key derived from the master
key, since clients put file names and other free text in it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.keys import MasterKey
from records.errors import IdempotencyInFlight
from records.models import IdempotencyReservation, Submission
from records.process import owner_alive, process_token

LEASE = timedelta(seconds=60)
HEARTBEAT_SECONDS = 15.0
RETRY_AFTER_SECONDS = 5


def key_hash(master: MasterKey, client_id: str, key: str) -> str:
    digest = hmac.new(master.derive("idempotency/v1"), f"{client_id}\n{key}".encode(), "sha256")
    return digest.hexdigest()


@dataclass(frozen=True)
class Reservation:
    client_id: str
    key_hash: str
    owner: str
    request_id: str


def previous_submission(session: Session, client_id: str, hashed: str) -> Submission | None:
    return session.scalars(
        select(Submission).where(
            Submission.client_id == client_id, Submission.idempotency_key == hashed
        )
    ).first()


def _in_flight() -> IdempotencyInFlight:
    return IdempotencyInFlight(
        "A request with this Idempotency-Key is still being processed; retry later.",
        extra={"retry_after": RETRY_AFTER_SECONDS},
    )


def _blocks(row: IdempotencyReservation, now: datetime) -> bool:
    if row.lease_until <= now:
        return False
    return owner_alive(row.owner) is not False


def reserve(
    sessions: sessionmaker[Session],
    client_id: str,
    hashed: str,
    dataset: str,
    request_id: str,
    now: datetime,
) -> Reservation:
    """Commit a reservation of (client, key), or raise IdempotencyInFlight."""
    mine = Reservation(client_id, hashed, process_token(), request_id)
    with sessions() as session:
        row = session.get(IdempotencyReservation, (client_id, hashed))
        if row is None:
            session.add(
                IdempotencyReservation(
                    client_id=client_id,
                    key_hash=hashed,
                    dataset=dataset,
                    owner=mine.owner,
                    request_id=request_id,
                    created_at=now,
                    lease_until=now + LEASE,
                )
            )
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                raise _in_flight() from None
            return mine
        if _blocks(row, now):
            raise _in_flight()
        # The owner is gone (or silent past its lease): take the reservation over, unless
        # another request has just done so.
        taken = session.execute(
            update(IdempotencyReservation)
            .where(
                IdempotencyReservation.client_id == client_id,
                IdempotencyReservation.key_hash == hashed,
                IdempotencyReservation.owner == row.owner,
                IdempotencyReservation.request_id == row.request_id,
            )
            .values(
                owner=mine.owner,
                request_id=request_id,
                dataset=dataset,
                created_at=now,
                lease_until=now + LEASE,
            )
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            raise _in_flight()
        session.commit()
        return mine


def _owned(reservation: Reservation) -> list[object]:
    return [
        IdempotencyReservation.client_id == reservation.client_id,
        IdempotencyReservation.key_hash == reservation.key_hash,
        IdempotencyReservation.owner == reservation.owner,
        IdempotencyReservation.request_id == reservation.request_id,
    ]


def renew(sessions: sessionmaker[Session], reservation: Reservation, now: datetime) -> bool:
    """Extend the lease (the heartbeat of a long upload); False if it was taken over."""
    with sessions() as session:
        done = session.execute(
            update(IdempotencyReservation)
            .where(*_owned(reservation))  # type: ignore[arg-type]
            .values(lease_until=now + LEASE)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]


def release(sessions: sessionmaker[Session], reservation: Reservation) -> None:
    """Drop the reservation of a request that failed: the key may be used again."""
    with sessions() as session:
        session.execute(
            delete(IdempotencyReservation)
            .where(*_owned(reservation))  # type: ignore[arg-type]
            .execution_options(synchronize_session=False)
        )
        session.commit()


def settle(session: Session, reservation: Reservation) -> bool:
    """Delete the reservation in the transaction that stores the submission; False if it is no
    longer ours (a lapsed lease taken over), in which case the submission must not be stored."""
    done = session.execute(
        delete(IdempotencyReservation)
        .where(*_owned(reservation))  # type: ignore[arg-type]
        .execution_options(synchronize_session=False)
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]
