"""Training, in one place: the policy (SFT) and PPM (pairwise) recipes over
shared components (`common`), the data they learn from, extracted from search
trees (`extract`) or read in the reference's released formats (`official`),
and running a recipe on several processes (`launch`)."""
