-- The firings of the schedules of pipeline files (`on: schedule`), keyed
-- by repository, file, schedule and firing time: a firing is recorded
-- before its run is made and its run id with the run, so that a firing
-- makes one run across restarts. Kind is seen (when the schedule was first
-- seen, no run), run or skipped (missed while no server ran).
CREATE TABLE schedule_firings (
    tenant      TEXT NOT NULL,
    repo        TEXT NOT NULL,
    file        TEXT NOT NULL,
    schedule    TEXT NOT NULL,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    error       TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, repo, file, schedule, at)
);

-- The firings claimed whose run is not made yet: looked for at every tick.
CREATE INDEX schedule_firings_pending ON schedule_firings (at) WHERE kind = 'run' AND run_id = '' AND error = '';
