-- Why an attempt's failure was or was not retried, for the run detail.
ALTER TABLE attempts ADD COLUMN retry TEXT;
