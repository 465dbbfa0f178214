// Package enrich adds what the sources cannot know to events before they are normalized: data
// classes and a sensitivity weight from a catalog of resources, tools, prompts and servers
// ([Catalog]), and a principal's department, peer group, roles and other attributes from a
// directory exported by IT ([Directory]). The [Enricher] holds both, reloads them when their
// files change, and is what the normalizer stage calls (processors.WithEnricher).
//
// Enrichment never fails an event: a principal the directory does not list is marked
// ("directory.status" = "unknown") for detectors to flag, and an event no catalog rule matches
// gets the catalog's default sensitivity. File formats, precedence and reload behaviour are
// described in docs/enrichment.md.
package enrich
