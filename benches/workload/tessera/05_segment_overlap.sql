-- How many recent buyers are also high-value customers (two segments' overlap).
SELECT segment_count('recent_buyers & high_value') AS overlap
