SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?;
