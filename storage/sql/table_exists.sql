SELECT count() FROM system.tables WHERE database = ? AND name = ?;
