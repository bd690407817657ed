"""What a run produced: results.json records, the printed summary, the paper's numbers beside them."""
