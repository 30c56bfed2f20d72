"""Benchmarks of mentorflow against ceilings measured in the same run."""
