"""Isolation Forest baseline of `mcpwatch eval`: trained on the history's principal-windows,
scoring the test phase's. Reads {"train": [[...]], "test": [[...]]} on stdin, writes the test
windows' anomaly scores (higher is more anomalous) as a JSON list on stdout."""
import json
import sys

import numpy as np
from sklearn.ensemble import IsolationForest

data = json.load(sys.stdin)
train = np.array(data["train"], dtype=float)
test = np.array(data["test"], dtype=float)
model = IsolationForest(n_estimators=200, random_state=0).fit(train)
json.dump((-model.score_samples(test)).tolist(), sys.stdout)
