"""The claim history that live features read: the SQL history store, its in-memory index in each
service worker, and the online feature fetch."""
