"""Results-Based Accountability: results, their indicators with the values each reader may
read, stories behind the curve, what works, partners' roles and the action plan.

Who may do what (object ownership, not only scopes):

- read: any caller with ``indicators:read`` reads every result and every story; the public
  reader (organization ``public``) reads public results and their public stories only. Values
  are read through :func:`aggregation.reads.series`, which authorizes and audits per release:
  an indicator whose releases the reader may not read is listed without values.
- results, their indicators, strategies and the action plan are written by the backbone
  (``indicators:write``);
- a story, and each new version of it, by its author organization only;
- a partner's role and commitments by that partner itself, or by the backbone.

Every write also needs ``results:write``. Services flush and never commit; every read and
write leaves an audit event in the request's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from aggregation import reads
from aggregation.definition import IndicatorDefinition
from aggregation.definitions import IndicatorInvalid, get_definition, visible_to
from aggregation.models import Indicator, Release
from aggregation.review import ReleaseNotPublished
from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import (
    ConcealedObject,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    ObjectAccessDenied,
    PolicyDenied,
)
from core.ids import new_id
from disclosure.vocabulary import CellStatus
from identity.errors import InsufficientScope
from identity.models import Organization
from policy.engine import PolicySet
from policy.model import PUBLIC, Principal
from policy.vocabulary import OrganizationKind
from results.documents import (
    ActionIn,
    PartnerRoleIn,
    ResultIn,
    ResultIndicatorIn,
    StoryIn,
    StoryVersionIn,
    StrategyIn,
)
from results.forecast import following_periods, forecast, periods_through
from results.models import (
    ActionItem,
    PartnerRole,
    Result,
    ResultIndicator,
    Story,
    StoryVersion,
    Strategy,
)
from results.views import (
    ActionView,
    CommitmentView,
    EvidenceView,
    ForecastValue,
    IndicatorLink,
    IndicatorSummary,
    PartnerRoleView,
    Point,
    Reference,
    ResultDetail,
    ResultInfo,
    ResultSummary,
    StoryVersionView,
    StoryView,
    StrategyView,
)
from results.vocabulary import (
    ActionStatus,
    Audience,
    IndicatorRole,
    Trend,
)

READ_SCOPE = "indicators:read"
WRITE_SCOPE = "results:write"
BACKBONE_SCOPE = "indicators:write"
# Without a target period ahead, the baseline forecast looks this many periods ahead.
FORECAST_PERIODS = 3
_NO_RESULT = "No such result."
_NO_STORY = "No such story."

# -- who may ------------------------------------------------------------------------------------


def is_public(ctx: RequestContext) -> bool:
    """Whether the caller is the anonymous public reader (the public scorecard)."""
    return ctx.principal is not None and ctx.principal.organization_id == PUBLIC


def _reader(ctx: RequestContext) -> Principal:
    if ctx.principal is None:
        raise Forbidden("Results are read with an access token, or on the public scorecard.")
    if not is_public(ctx) and READ_SCOPE not in ctx.principal.scopes:
        raise InsufficientScope(frozenset({READ_SCOPE}))
    return ctx.principal


def _writer(ctx: RequestContext) -> Principal:
    if ctx.principal is None or is_public(ctx):
        raise Forbidden("The public reads results; it never writes them.")
    if WRITE_SCOPE not in ctx.principal.scopes:
        raise InsufficientScope(frozenset({WRITE_SCOPE}))
    return ctx.principal


def _backbone(ctx: RequestContext) -> Principal:
    principal = _writer(ctx)
    if principal.organization_kind != OrganizationKind.BACKBONE:
        raise Forbidden(
            "Results, their indicators, strategies and the action plan are written by the "
            "backbone organization."
        )
    if BACKBONE_SCOPE not in principal.scopes:
        raise InsufficientScope(frozenset({WRITE_SCOPE, BACKBONE_SCOPE}))
    return principal


def _result(session: Session, result_id: str) -> Result:
    row = session.get(Result, result_id)
    if row is None:
        raise NotFound(_NO_RESULT)
    return row


def _visible_result(session: Session, ctx: RequestContext, result_id: str) -> Result:
    """The result, if the reader may see it: the public is answered for a result that is not
    public exactly as for one that does not exist (audited as the denial it is)."""
    row = _result(session, result_id)
    if is_public(ctx) and not row.public:
        raise ConcealedObject(_NO_RESULT)
    return row


def _story_visible(ctx: RequestContext, story: Story, result: Result) -> bool:
    return not is_public(ctx) or (result.public and story.audience == Audience.PUBLIC)


def _organization(session: Session, organization_id: str, what: str) -> Organization:
    org = session.get(Organization, organization_id)
    if org is None:
        raise InvalidInput(f"The {what} must be an organization of the initiative.")
    return org


# -- views --------------------------------------------------------------------------------------


def _links(
    session: Session, result_id: str, ctx: RequestContext | None = None
) -> list[ResultIndicator]:
    """A result's indicators in order; for the public, only those published to the public (the
    public is not told of the others, as the indicator API does not tell it)."""
    links = list(
        session.scalars(
            select(ResultIndicator)
            .where(ResultIndicator.result_id == result_id)
            .order_by(ResultIndicator.position)
        )
    )
    if ctx is not None and is_public(ctx):
        links = [
            link
            for link in links
            if visible_to(ctx.principal, get_definition(session, link.indicator_id)[1])
        ]
    return links


def _info(session: Session, row: Result, ctx: RequestContext | None = None) -> ResultInfo:
    return ResultInfo(
        id=row.id,
        title=row.title,
        description=row.description,
        population=row.population,
        geography=row.geography,
        public=row.public,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        indicators=[
            IndicatorLink(
                indicator=link.indicator_id,
                position=link.position,
                role=IndicatorRole(link.role),
            )
            for link in _links(session, row.id, ctx)
        ],
    )


def _reference(definition: IndicatorDefinition, which: str) -> Reference | None:
    ref = definition.baseline if which == "baseline" else definition.target
    return Reference(period=ref.period, value=ref.value) if ref is not None else None


def trend(latest: float, previous: float, direction: str) -> Trend:
    """The latest value against the previous one, in the indicator's direction of good."""
    change = latest - previous
    if abs(change) <= 1e-9 * max(1.0, abs(previous)):
        return Trend.FLAT
    return Trend.BETTER if (change > 0) == (direction == "increase") else Trend.WORSE


def _forecast(valued: Sequence[Point], target: Reference | None) -> list[ForecastValue]:
    if len(valued) < 2:
        return []
    last = valued[-1].period
    periods = periods_through(last, target.period) if target is not None else None
    if not periods:
        periods = following_periods(last, FORECAST_PERIODS)
    if not periods:  # labels this module cannot count in (see results.forecast)
        return []
    actual = [(p.period, p.value) for p in valued if p.value is not None]
    return [ForecastValue(period=f.period, value=f.value) for f in forecast(actual, periods)]


def indicator_summary(
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    views: reads.ReleaseViews,
    link: ResultIndicator,
) -> IndicatorSummary:
    """One indicator of a result for the caller: its series (read, authorized and audited per
    release by the indicator service), latest value, trend, baseline, target and forecast; or,
    if the caller may read none of its releases, the indicator without values."""
    return summarize_indicator(
        session,
        ctx,
        policy,
        views,
        link.indicator_id,
        position=link.position,
        role=IndicatorRole(link.role),
    )


def summarize_indicator(
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    views: reads.ReleaseViews,
    indicator_id: str,
    *,
    position: int = 0,
    role: IndicatorRole = IndicatorRole.PRIMARY,
) -> IndicatorSummary:
    """An indicator for the caller, in or out of a result (see :func:`indicator_summary`)."""
    _, definition = get_definition(session, indicator_id)
    baseline, target = _reference(definition, "baseline"), _reference(definition, "target")
    hidden = IndicatorSummary(
        indicator=indicator_id,
        position=position,
        role=role,
        title=definition.title,
        unit=str(definition.unit),
        direction=definition.direction,
        baseline=baseline,
        target=target,
        values_visible=False,
    )
    try:
        series = reads.series(session, ctx, policy, views, indicator_id, {})
    except (Forbidden, ReleaseNotPublished, NotFound) as exc:
        # NotFound: the public asked of an indicator not published to it (answered as unknown).
        # The denial is part of what happened: audited like the series read it stands for.
        record(
            session,
            ctx,
            AuditRecord(
                action=AuditAction.RELEASE_READ,
                outcome="denied",
                resource_type="indicator_series",
                resource_id=indicator_id,
                decision=exc.decision if isinstance(exc, PolicyDenied) else None,
                detail=exc.kind,
            ),
        )
        return hidden
    except IndicatorInvalid:  # no period dimension: an indicator without a time series
        return hidden
    points = [
        Point(
            period=str(p["period"]),
            value=p.get("value"),
            lower=p.get("lower"),
            upper=p.get("upper"),
            status=p.get("status"),
            release=p["release"],
        )
        for p in series["points"]
    ]
    valued = [p for p in points if p.value is not None and p.status != CellStatus.SUPPRESSED]
    latest = valued[-1] if valued else None
    change = None
    if len(valued) >= 2:
        assert valued[-1].value is not None and valued[-2].value is not None
        change = trend(valued[-1].value, valued[-2].value, definition.direction)
    return hidden.model_copy(
        update={
            "values_visible": True,
            "latest": latest,
            "trend": change,
            "points": points,
            "forecast": _forecast(valued, target),
        }
    )


def _summary(
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    views: reads.ReleaseViews,
    row: Result,
) -> ResultSummary:
    info = _info(session, row, ctx).model_dump(exclude={"indicators"})
    return ResultSummary(
        **info,
        indicators=[
            indicator_summary(session, ctx, policy, views, link)
            for link in _links(session, row.id, ctx)
        ],
    )


def _version_view(row: StoryVersion) -> StoryVersionView:
    return StoryVersionView(
        version=row.version,
        title=row.title,
        body=row.body,
        as_of=row.as_of,
        created_at=row.created_at,
        author_organization=row.author_organization,
        author_client=row.author_client,
    )


def _story_view(session: Session, story: Story, *, versions: bool) -> StoryView:
    rows = list(
        session.scalars(
            select(StoryVersion)
            .where(StoryVersion.story_id == story.id)
            .order_by(StoryVersion.version.desc())
        )
    )
    return StoryView(
        id=story.id,
        result=story.result_id,
        indicator=story.indicator_id,
        release=story.release_id,
        author_organization=story.author_organization,
        author_client=story.author_client,
        audience=Audience(story.audience),
        created_at=story.created_at,
        updated_at=story.updated_at,
        current=_version_view(rows[0]),
        versions=[_version_view(r) for r in rows] if versions else None,
    )


def _strategy_view(row: Strategy) -> StrategyView:
    return StrategyView(
        id=row.id,
        result=row.result_id,
        title=row.title,
        description=row.description,
        evidence=[EvidenceView.model_validate(e) for e in row.evidence],
        partners=list(row.partners),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _partner_view(row: PartnerRole) -> PartnerRoleView:
    return PartnerRoleView(
        result=row.result_id,
        organization=row.organization_id,
        role=row.role,
        commitments=[CommitmentView.model_validate(c) for c in row.commitments],
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def _action_view(row: ActionItem) -> ActionView:
    return ActionView(
        id=row.id,
        result=row.result_id,
        title=row.title,
        owner=row.owner_organization,
        due=row.due,
        status=ActionStatus(row.status),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# -- reads --------------------------------------------------------------------------------------


def list_results(
    session: Session, ctx: RequestContext, policy: PolicySet, views: reads.ReleaseViews
) -> list[ResultSummary]:
    """Every result the caller may see (the public: the public ones), by id, each with its
    indicators as the caller may read them."""
    _reader(ctx)
    query = select(Result).order_by(Result.id)
    if is_public(ctx):
        query = query.where(Result.public.is_(True))
    rows = list(session.scalars(query))
    out = [_summary(session, ctx, policy, views, row) for row in rows]
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RESULT_READ, resource_type="result", counts={"results": len(out)}
        ),
    )
    return out


def get_result(
    session: Session,
    ctx: RequestContext,
    policy: PolicySet,
    views: reads.ReleaseViews,
    result_id: str,
) -> ResultDetail:
    """One result with its indicators (series, latest value, trend, forecast), the current
    versions of its stories the caller may read, strategies, partners' roles with commitments
    and the action plan (raises :class:`NotFound`)."""
    _reader(ctx)
    row = _visible_result(session, ctx, result_id)
    summary = _summary(session, ctx, policy, views, row)
    stories = [
        _story_view(session, s, versions=False)
        for s in session.scalars(
            select(Story).where(Story.result_id == row.id).order_by(Story.created_at, Story.id)
        )
        if _story_visible(ctx, s, row)
    ]
    strategies = [
        _strategy_view(s)
        for s in session.scalars(
            select(Strategy)
            .where(Strategy.result_id == row.id)
            .order_by(Strategy.created_at, Strategy.id)
        )
    ]
    partners = [
        _partner_view(p)
        for p in session.scalars(
            select(PartnerRole)
            .where(PartnerRole.result_id == row.id)
            .order_by(PartnerRole.organization_id)
        )
    ]
    actions = sorted(
        session.scalars(select(ActionItem).where(ActionItem.result_id == row.id)),
        key=lambda a: (a.due is None, a.due or date.min, a.created_at, a.id),
    )
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RESULT_READ,
            resource_type="result",
            resource_id=row.id,
            counts={"indicators": len(summary.indicators), "stories": len(stories)},
        ),
    )
    return ResultDetail(
        **summary.model_dump(exclude={"indicators"}),
        indicators=summary.indicators,
        stories=stories,
        strategies=strategies,
        partners=partners,
        actions=[_action_view(a) for a in actions],
    )


def results_for_indicator(
    session: Session, ctx: RequestContext, indicator_id: str
) -> list[ResultInfo]:
    """The results an indicator belongs to (the public: the public ones), by id."""
    _reader(ctx)
    # Unknown, or (for the public) not published to it: the same NotFound.
    get_definition(session, indicator_id, reader=ctx.principal)
    query = (
        select(Result)
        .join(ResultIndicator, ResultIndicator.result_id == Result.id)
        .where(ResultIndicator.indicator_id == indicator_id)
        .order_by(Result.id)
    )
    if is_public(ctx):
        query = query.where(Result.public.is_(True))
    out = [_info(session, row, ctx) for row in session.scalars(query)]
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RESULT_READ,
            resource_type="indicator_results",
            resource_id=indicator_id,
            counts={"results": len(out)},
        ),
    )
    return out


def stories_for_indicator(
    session: Session, ctx: RequestContext, indicator_id: str
) -> list[StoryView]:
    """The stories behind an indicator's curve (about it or one of its releases) the caller may
    read, current versions, oldest first."""
    _reader(ctx)
    # Unknown, or (for the public) not published to it: the same NotFound.
    get_definition(session, indicator_id, reader=ctx.principal)
    out = []
    for story, result in session.execute(
        select(Story, Result)
        .join(Result, Result.id == Story.result_id)
        .where(Story.indicator_id == indicator_id)
        .order_by(Story.created_at, Story.id)
    ).all():
        if _story_visible(ctx, story, result):
            out.append(_story_view(session, story, versions=False))
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.STORY_READ,
            resource_type="indicator_stories",
            resource_id=indicator_id,
            counts={"stories": len(out)},
        ),
    )
    return out


def get_story(session: Session, ctx: RequestContext, story_id: str) -> StoryView:
    """One story with every version, newest (current) first (raises :class:`NotFound`)."""
    _reader(ctx)
    story = session.get(Story, story_id)
    if story is None:
        raise NotFound(_NO_STORY)
    if not _story_visible(ctx, story, _result(session, story.result_id)):
        raise ConcealedObject(_NO_STORY)
    view = _story_view(session, story, versions=True)
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.STORY_READ,
            resource_type="story",
            resource_id=story.id,
            counts={"versions": len(view.versions or ())},
        ),
    )
    return view


# -- writes -------------------------------------------------------------------------------------


def _check_indicators(session: Session, items: Sequence[ResultIndicatorIn]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.indicator in seen:
            raise InvalidInput("An indicator is listed twice.")
        seen.add(item.indicator)
        if session.get(Indicator, item.indicator) is None:
            raise InvalidInput("An indicator listed does not exist.")


def _replace_indicators(
    session: Session, result_id: str, items: Sequence[ResultIndicatorIn]
) -> None:
    session.execute(delete(ResultIndicator).where(ResultIndicator.result_id == result_id))
    for position, item in enumerate(items):
        session.add(
            ResultIndicator(
                result_id=result_id,
                indicator_id=item.indicator,
                position=position,
                role=IndicatorRole(item.role),
            )
        )


def create_result(session: Session, ctx: RequestContext, document: ResultIn) -> ResultInfo:
    """Create a result with its indicators (which must exist), as the backbone."""
    principal = _backbone(ctx)
    if session.get(Result, document.id) is not None:
        raise Conflict("A result with this id exists.")
    _check_indicators(session, document.indicators)
    row = Result(
        id=document.id,
        title=document.title,
        description=document.description,
        population=document.population,
        geography=document.geography,
        public=document.public,
        created_by=principal.organization_id,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    session.add(row)
    session.flush()
    _replace_indicators(session, row.id, document.indicators)
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RESULT_WRITE,
            resource_type="result",
            resource_id=row.id,
            counts={"indicators": len(document.indicators)},
        ),
    )
    return _info(session, row)


def set_indicators(
    session: Session, ctx: RequestContext, result_id: str, items: Sequence[ResultIndicatorIn]
) -> ResultInfo:
    """Replace a result's indicators with ``items``, in their order (the backbone's)."""
    _backbone(ctx)
    row = _result(session, result_id)
    _check_indicators(session, items)
    _replace_indicators(session, row.id, items)
    row.updated_at = ctx.now
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RESULT_WRITE,
            resource_type="result_indicators",
            resource_id=row.id,
            counts={"indicators": len(items)},
        ),
    )
    return _info(session, row)


def _story_target(
    session: Session, result_id: str, document: StoryIn
) -> tuple[str | None, str | None]:
    """The (indicator, release) a story is about: among the result's indicators."""
    indicators = {link.indicator_id for link in _links(session, result_id)}
    indicator = document.indicator
    if indicator is not None and indicator not in indicators:
        raise InvalidInput("A story is about one of its result's indicators.")
    if document.release is None:
        return indicator, None
    release = session.get(Release, document.release)
    if (
        release is None
        or release.indicator_id not in indicators
        or (indicator is not None and release.indicator_id != indicator)
    ):
        raise InvalidInput("A story is about a release of one of its result's indicators.")
    return release.indicator_id, release.id


def add_story(
    session: Session, ctx: RequestContext, result_id: str, document: StoryIn
) -> StoryView:
    """A new story behind the curve of a result (or of one of its indicators or releases),
    written by the caller's organization, which alone may revise it."""
    principal = _writer(ctx)
    row = _result(session, result_id)
    indicator, release = _story_target(session, row.id, document)
    story = Story(
        id=new_id("story"),
        result_id=row.id,
        indicator_id=indicator,
        release_id=release,
        author_organization=principal.organization_id,
        author_client=principal.client_id,
        audience=Audience(document.audience),
        latest_version=1,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    session.add(story)
    session.flush()
    _add_version(session, principal, story, 1, document, ctx)
    return _story_view(session, story, versions=True)


def _add_version(
    session: Session,
    principal: Principal,
    story: Story,
    version: int,
    document: StoryVersionIn,
    ctx: RequestContext,
) -> None:
    session.add(
        StoryVersion(
            story_id=story.id,
            version=version,
            title=document.title,
            body=document.body,
            as_of=document.as_of,
            created_at=ctx.now,
            author_organization=principal.organization_id,
            author_client=principal.client_id,
        )
    )
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.STORY_WRITE,
            resource_type="story",
            resource_id=f"{story.id}/v{version}",
        ),
    )


def add_story_version(
    session: Session, ctx: RequestContext, story_id: str, document: StoryVersionIn
) -> StoryView:
    """A new (current) version of a story, by its author organization only; earlier versions
    stay readable."""
    principal = _writer(ctx)
    # The row lock makes two revisions at once number themselves one after the other.
    story = session.get(Story, story_id, with_for_update=True)
    if story is None:
        raise NotFound(_NO_STORY)
    if story.author_organization != principal.organization_id:
        # Stories are read across the initiative, so their existence is no secret: the
        # refusal is explicit (and audited as a denial).
        raise ObjectAccessDenied("A story is revised by the organization that wrote it only.")
    story.latest_version += 1
    story.updated_at = ctx.now
    _add_version(session, principal, story, story.latest_version, document, ctx)
    return _story_view(session, story, versions=True)


def add_strategy(
    session: Session, ctx: RequestContext, result_id: str, document: StrategyIn
) -> StrategyView:
    """A strategy (what works) towards a result, with its evidence and partners (the
    backbone's)."""
    principal = _backbone(ctx)
    row = _result(session, result_id)
    if len(set(document.partners)) != len(document.partners):
        raise InvalidInput("A partner is listed twice.")
    for org in document.partners:
        _organization(session, org, "partners of a strategy")
    strategy = Strategy(
        id=new_id("strategy"),
        result_id=row.id,
        title=document.title,
        description=document.description,
        evidence=[e.model_dump(mode="json") for e in document.evidence],
        partners=list(document.partners),
        created_by=principal.organization_id,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    session.add(strategy)
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RESULT_STRATEGY_WRITE,
            resource_type="result_strategy",
            resource_id=strategy.id,
            counts={"evidence": len(document.evidence), "partners": len(document.partners)},
        ),
    )
    return _strategy_view(strategy)


def set_partner_role(
    session: Session,
    ctx: RequestContext,
    result_id: str,
    organization_id: str,
    document: PartnerRoleIn,
) -> PartnerRoleView:
    """Set an organization's role towards a result and its commitments: by that organization
    itself, or by the backbone."""
    principal = _writer(ctx)
    row = _result(session, result_id)
    if (
        principal.organization_id != organization_id
        and principal.organization_kind != OrganizationKind.BACKBONE
    ):
        raise ObjectAccessDenied(
            "A partner sets its own role and commitments; the backbone may set any."
        )
    org = session.get(Organization, organization_id)
    if org is None:
        raise NotFound("No such organization.")
    if org.kind not in (OrganizationKind.PARTNER, OrganizationKind.BACKBONE):
        # An auditor oversees the initiative; it takes no role in its results.
        raise InvalidInput("Partners and the backbone have roles towards a result.")
    role = session.get(PartnerRole, (row.id, org.id), with_for_update=True)
    commitments = [c.model_dump(mode="json") for c in document.commitments]
    if role is None:
        role = PartnerRole(result_id=row.id, organization_id=org.id)
        session.add(role)
    role.role = document.role
    role.commitments = commitments
    role.updated_at = ctx.now
    role.updated_by = principal.organization_id
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RESULT_PARTNER_WRITE,
            resource_type="result_partner",
            resource_id=f"{row.id}/{org.id}",
            counts={"commitments": len(commitments)},
        ),
    )
    return _partner_view(role)


def add_action(
    session: Session, ctx: RequestContext, result_id: str, document: ActionIn
) -> ActionView:
    """An item of a result's action plan (the backbone's)."""
    _backbone(ctx)
    row = _result(session, result_id)
    _organization(session, document.owner, "owner of an action")
    item = ActionItem(
        id=new_id("action"),
        result_id=row.id,
        title=document.title,
        owner_organization=document.owner,
        due=document.due,
        status=ActionStatus(document.status),
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    session.add(item)
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RESULT_ACTION_WRITE,
            resource_type="result_action",
            resource_id=item.id,
        ),
    )
    return _action_view(item)


def set_action_status(
    session: Session, ctx: RequestContext, action_id: str, status: ActionStatus
) -> ActionView:
    """Move an action plan item to ``status`` (the backbone's)."""
    _backbone(ctx)
    item = session.get(ActionItem, action_id, with_for_update=True)
    if item is None:
        raise NotFound("No such action.")
    item.status = ActionStatus(status)
    item.updated_at = ctx.now
    session.flush()
    record(
        session,
        ctx,
        AuditRecord(
            action=AuditAction.RESULT_ACTION_WRITE,
            resource_type="result_action",
            resource_id=item.id,
            detail=f"status {item.status}",
        ),
    )
    return _action_view(item)
