"""The disclosure-control engine: counts in, protected tables out.

Tables with margins (:mod:`disclosure.cube`), primary and secondary cell suppression
(:mod:`disclosure.suppression`, :mod:`disclosure.hypercube`, :mod:`disclosure.protection`) audited
by an attacker's linear programs (:mod:`disclosure.attacker`, :mod:`disclosure.lp`), the joint
cube of a population and its audit across everything published (:mod:`disclosure.lattice`,
:mod:`disclosure.joint`, :mod:`disclosure.partition`), rounding and coding
(:mod:`disclosure.rounding`), and differential privacy with OpenDP (:mod:`disclosure.dp`,
:mod:`disclosure.dp_accuracy`).

Pure like :mod:`policy`: no database, clock, network or framework (``tests/disclosure/
test_purity.py``). What reads records and earlier releases, stores releases and charges the
privacy budget is the indicator service, :mod:`aggregation`.
"""
