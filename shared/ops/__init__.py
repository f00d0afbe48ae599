"""Operations on demand: reprocess dead letters and leads."""
