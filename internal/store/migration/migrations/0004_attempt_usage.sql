-- What an attempt used, measured in its cgroup by the agent: the highest
-- memory charged at once (bytes) and its CPU time (nanoseconds). 0 when the
-- worker had no cgroups or the attempt did not end with a status.
ALTER TABLE attempts ADD COLUMN peak_memory {{int64}} NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN cpu_time {{int64}} NOT NULL DEFAULT 0;
