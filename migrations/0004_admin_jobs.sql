-- 0004: jobs of the whole installation (an admin's fsck, issue 14) belong to
-- no dataset and no branch.
ALTER TABLE job ALTER COLUMN dataset_id DROP NOT NULL;
ALTER TABLE job ALTER COLUMN ref_name DROP NOT NULL;
