ALTER TABLE deployments ADD COLUMN health TEXT;
