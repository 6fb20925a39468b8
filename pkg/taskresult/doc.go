// Package taskresult reads the task results that the image-generation
// platforms report, for the archiver and the aggregator: the Message of an SNS
// Notification from Stable Diffusion on Amazon EKS (seeds 000/001), and the
// body of the sdTaskFinished and sdJobFinished callbacks (seed 002).
//
// The parsers are lenient on purpose: a result is recorded whatever its
// shape, so they never fail and never panic. They return what could be read
// and, in Problems, one line per thing that was missing or unexpected.
// Problems never quote field values, so callers may log them.
//
// SummarizeCallbackResult reads only what a job record keeps of a callback
// body (success, and each image's id, URL, type and size) with a scanner
// that gives ParseCallbackResult's answers at a fraction of its cost.
package taskresult
