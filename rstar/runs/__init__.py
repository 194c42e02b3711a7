"""Running searches and evaluations: their files (`store`), where they run
(`workers`), `rstar search` (`search`) and `rstar eval` (`evaluate`)."""
