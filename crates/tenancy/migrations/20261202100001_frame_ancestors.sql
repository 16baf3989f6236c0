-- Origins allowed to embed the tenant's dashboard pages in an iframe (CSP frame-ancestors);
-- empty: the pages cannot be framed.
ALTER TABLE tenants ADD COLUMN frame_ancestors TEXT[] NOT NULL DEFAULT '{}';
