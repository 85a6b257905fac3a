-- name: insert_upload
INSERT INTO upload (id, dataset_id, object_key, filename, size, blake3, created_by)
VALUES (%(id)s, %(dataset_id)s, %(object_key)s, %(filename)s, %(size)s, %(blake3)s, %(created_by)s);

-- name: uploads_in_use
-- uploads (by object key) that a queued or running job will still read
SELECT u.object_key
FROM job j JOIN upload u ON u.id = j.upload_id
WHERE j.state IN ('queued', 'running') AND u.object_key = ANY(%(keys)s)
