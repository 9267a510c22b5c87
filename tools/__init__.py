"""Tools that read a synthesized cloud assembly: summary, audit diff, baselines, diagram."""
