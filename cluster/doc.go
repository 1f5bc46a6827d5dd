// Package cluster is skiff's membership layer: one serf member per node.
package cluster
