-- 0014: search documents kept in the row (issue 17, search p95). A search
-- matching most datasets tests the whole document of each; TOASTed (rows
-- past ~2 KB move their largest values out of line), each test cost two
-- TOAST index and heap lookups and a decompression: 22 of 24 ms for 10,000
-- datasets. Rows up to 8,160 bytes now stay whole and uncompressed (most
-- datasets; a long readme's row is still TOASTed), at twice the heap.
ALTER TABLE dataset SET (toast_tuple_target = 8160);
UPDATE dataset SET name = name;  -- existing documents stored again, in the row
