-- edgegov fleet archive, version 2: indexes for claiming work and listing incidents.

CREATE INDEX jobs_by_state ON jobs (state, not_before_ms);
CREATE INDEX incidents_by_device ON incidents (device, trip_wall_ms);
