"""Who takes part in the demo initiative, and the public dimension values its agreements declare."""

from __future__ import annotations

SCHOOL_YEARS = ("2021-22", "2022-23", "2023-24", "2024-25", "2025-26")
BIRTH_YEARS = ("2016", "2017", "2018", "2019", "2020")
RACE_ETHNICITY = (
    "American Indian or Alaska Native",
    "Asian",
    "Black or African American",
    "Hispanic or Latino",
    "Native Hawaiian or Other Pacific Islander",
    "White",
    "Two or More Races",
)
NEIGHBORHOODS = (
    "Ashland",
    "Bayview",
    "Birchwood",
    "Brookside",
    "Cedar Heights",
    "Central",
    "Clearwater",
    "Dogwood",
    "East End",
    "Elmhurst",
    "Fairview",
    "Foxhall",
    "Glenmont",
    "Harbor Point",
    "Highland Park",
    "Hillcrest",
    "Ironbridge",
    "Juniper",
    "Kingsley",
    "Lakeshore",
    "Laurel",
    "Maple Grove",
    "Meadowbrook",
    "Millbrook",
    "North End",
    "Oak Hill",
    "Old Town",
    "Parkside",
    "Pine Ridge",
    "Quarry Hill",
    "Riverside",
    "Rosedale",
    "South End",
    "Spring Valley",
    "Stonegate",
    "Sunnyside",
    "Union Square",
    "Westgate",
    "Willow Creek",
    "Woodlawn",
)
PREK_PROGRAMS = ("Head Start", "State Pre-K", "Community-based")

# The shared code lists the demo agreements refer to (``constraints.codelist``), defined once by
# the backbone: (id, title, kind, standard, codes).
CODE_LISTS: tuple[tuple[str, str, str, str | None, tuple[str, ...]], ...] = (
    ("neighborhoods", "Riverton neighborhoods", "geography", None, NEIGHBORHOODS),
    ("school-years", "School years (July to June)", "period", None, SCHOOL_YEARS),
    (
        "race-ethnicity",
        "Race/ethnicity, seven categories",
        "category",
        "OMB SPD 15 (1997), the seven aggregate categories of the U.S. Department of Education",
        RACE_ETHNICITY,
    ),
)

ORGANIZATIONS = (
    ("district", "Riverton Unified School District", "partner"),
    ("health", "Riverton County Department of Public Health", "partner"),
    ("early-learning", "Riverton Early Learning Network", "partner"),
    ("backbone", "Riverton Children's Collaborative", "backbone"),
    ("auditor", "Office of the County Auditor", "auditor"),
)

# (client id, organization, role, description)
CLIENTS = (
    ("district-sis", "district", "partner-system", "the district's student information system"),
    ("district-data-manager", "district", "data-manager", "the district's data manager"),
    ("district-dashboard", "district", "dashboard", "the district's dashboard"),
    ("health-vitals", "health", "partner-system", "the health department's vital records system"),
    ("health-data-manager", "health", "data-manager", "the health department's data manager"),
    ("health-dashboard", "health", "dashboard", "the health department's dashboard"),
    (
        "elnet-enrollment",
        "early-learning",
        "partner-system",
        "the early-learning network's enrollment system",
    ),
    (
        "elnet-data-manager",
        "early-learning",
        "data-manager",
        "the early-learning network's data manager",
    ),
    ("backbone-manager", "backbone", "backbone-manager", "the backbone's data manager"),
    ("backbone-dashboard", "backbone", "dashboard", "the initiative's public dashboard"),
    ("backbone-admin", "backbone", "admin", "the backbone's administrator"),
    ("county-auditor", "auditor", "auditor", "the county auditor"),
    (
        "auditor-dashboard",
        "auditor",
        "dashboard",
        "the auditor's dashboard (not a recipient of health data)",
    ),
)

# One person per role a person holds in the demo (the systems and dashboards are clients only):
# (username, organization, role, name). Their passwords and TOTP secrets are generated at seeding
# and written to var/demo-credentials.json under "people".
PEOPLE = (
    ("dana.district", "district", "data-manager", "Dana Whitfield"),
    ("hector.health", "health", "data-manager", "Hector Ruiz"),
    ("erin.earlylearning", "early-learning", "data-manager", "Erin Nakamura"),
    ("sam.sis", "district", "partner-staff", "Sam Okonkwo"),
    ("harper.vitals", "health", "partner-staff", "Harper Lindgren"),
    ("eli.enrollment", "early-learning", "partner-staff", "Eli Moreau"),
    ("blake.backbone", "backbone", "backbone-manager", "Blake Osei"),
    ("ada.admin", "backbone", "admin", "Ada Lindqvist"),
    ("avery.auditor", "auditor", "auditor", "Avery Chen"),
)
