// Package deploy holds fanout's production deployment: the CloudFormation
// template fanout.yaml and its README. It has no code; its tests check the
// template, the repository's Dockerfile, .dockerignore and compose.yml
// against what the code reads (app.Variables) and calls
// (testdata/operations.txt).
package deploy
