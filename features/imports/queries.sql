-- name: insert_upload
INSERT INTO upload (id, dataset_id, object_key, filename, size, blake3, created_by)
VALUES (%(id)s, %(dataset_id)s, %(object_key)s, %(filename)s, %(size)s, %(blake3)s, %(created_by)s);
